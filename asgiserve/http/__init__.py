"""HTTP/1.1: parser adapters (bytes -> events), the sans-I/O core and the asyncio glue."""
