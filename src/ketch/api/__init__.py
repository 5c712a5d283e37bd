"""The Docker Engine API service (`ketch system service`): a second front door over
`ketch.Engine`, for the docker CLI, docker-py and other Engine API clients.

- `server`: listening (unix socket, loopback TCP, socket activation), the idle timer and
  SIGTERM's drain.
- `routes`: the endpoints: parse the request, call the Engine in a worker thread,
  answer in Docker's JSON shapes; errors mapped to statuses in one place.
- `streams`: Docker's stream framing and the hijacked (HTTP upgrade) connections of
  attach.
- `web`: the HTTP/1.1 server under all of it (asyncio + h11; wsproto for the attach
  websocket), ketch's own rather than aiohttp for the service's memory.

Nothing on the CLI's start-up path imports this package.
"""
