import re
from typing import Annotated, Any

import httpx
import msgspec
from litestar import post
from litestar.params import JSONBody

from shop.bootstrap import Container
from shop.entrypoints.http.app import create_app
from tests.conftest import http_client


class Probe(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    quantity: Annotated[int, msgspec.Meta(ge=1)]


@post("/probe", operation_id="Probe", exclude_from_auth=True)
async def probe(data: JSONBody[Probe]) -> dict[str, Any]:
    return {"name": data.name, "quantity": data.quantity}


async def test_liveness_answers_ok_with_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_ready_when_postgres_and_redis_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status_code": 404, "detail": "Not Found"}
    assert response.headers["x-request-id"]


async def test_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.json()["status_code"] == 405


async def test_invalid_body_is_a_422_that_says_what_is_wrong(clean: Container) -> None:
    async with http_client(create_app(clean, extra_route_handlers=[probe])) as client:
        response = await client.post("/probe", json={"name": "", "quantity": "three"})
    assert response.status_code == 422
    body = response.json()
    assert body["status_code"] == 422
    assert "Invalid request" in body["detail"]
    assert body["extra"], "the error must point at the offending field"


async def test_missing_field_is_a_422(clean: Container) -> None:
    async with http_client(create_app(clean, extra_route_handlers=[probe])) as client:
        response = await client.post("/probe", json={"name": "x"})
    assert response.status_code == 422
    assert "quantity" in response.text


async def test_malformed_json_is_a_400(clean: Container) -> None:
    async with http_client(create_app(clean, extra_route_handlers=[probe])) as client:
        response = await client.post(
            "/probe", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["status_code"] == 400


async def test_caller_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/health" in schema.json()["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_docs_load_every_asset_from_the_shop_itself(client: httpx.AsyncClient) -> None:
    """No CDN: on a machine without internet the docs must still render."""
    docs = await client.get("/docs")
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', docs.text)
    assert assets, docs.text[:500]
    assert all(url.startswith("/docs/assets/") for url in assets), assets
    for url in assets:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 0
