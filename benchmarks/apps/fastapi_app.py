"""One FastAPI route answering a JSON object (FastAPI's usual path: validation + JSON encoding)."""
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, world!"}
