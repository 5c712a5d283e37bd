"""ketch's registry client: pull, push and login against OCI Distribution registries.

`transport` speaks HTTP and answers auth challenges (Basic and Bearer tokens),
`credentials` reads and writes docker's config.json, `pull` and `push` move images
between a registry and the local stores.
"""
