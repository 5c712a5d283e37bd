"""ketch's embedded OCI Distribution registry server.

Three layers, as in CNCF distribution: `server` routes HTTP requests to handlers,
`storage` holds the registry semantics (links, uploads, manifest validation) and
`paths` owns the on-disk layout. `auth` checks htpasswd basic credentials.
"""
