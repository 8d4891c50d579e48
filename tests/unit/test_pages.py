"""The pages' HTTP side: which GraphiQL assets are served, the policy each page is sent
with, and who gets the demo customer's token. The pages themselves run in a real
browser in tests/e2e/test_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from api import pages
from api.pages import GRAPHIQL_ASSETS, graphiql_response, page_routes
from api.settings import Settings, SettingsError

ASSETS_PACKAGE = Path(pages.__file__).parent / "graphiql_assets"


class _App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def client(**settings: object) -> httpx.AsyncClient:
    app = _App(Settings(**settings))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=Starlette(routes=page_routes(app)))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def test_each_asset_is_the_version_the_npm_package_pins() -> None:
    pinned = json.loads((ASSETS_PACKAGE / "package.json").read_text())["dependencies"]
    locked = json.loads((ASSETS_PACKAGE / "package-lock.json").read_text())["packages"]
    for asset in GRAPHIQL_ASSETS:
        assert pinned[asset.package] == asset.version
        assert locked[f"node_modules/{asset.package}"]["version"] == asset.version


def test_graphiql_uses_the_cdn_and_allows_only_it_when_the_assets_are_not_fetched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pages, "ASSETS_DIR", tmp_path)
    response = graphiql_response()
    body = bytes(response.body).decode()
    policy = response.headers["content-security-policy"]
    assert "https://unpkg.com/graphiql@3.8.3/graphiql.min.js" in body
    assert "/graphiql-assets/" not in body
    assert "script-src 'self' https://unpkg.com;" in policy
    assert "Loading GraphiQL from https://unpkg.com" in body


def test_graphiql_uses_local_assets_and_allows_no_other_origin_when_they_are_fetched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for asset in GRAPHIQL_ASSETS:
        path = tmp_path / asset.package / asset.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("/* stand-in */")
    monkeypatch.setattr(pages, "ASSETS_DIR", tmp_path)
    response = graphiql_response()
    body = bytes(response.body).decode()
    assert "unpkg.com" not in body
    assert "unpkg.com" not in response.headers["content-security-policy"]
    # Every tag keeps its integrity hash: the local copy must be the CDN's file.
    assert body.count('integrity="sha384-') == len(GRAPHIQL_ASSETS)


async def test_only_the_listed_assets_are_served_never_other_files() -> None:
    async with client() as http:
        for name in ("package.json", "..%2Fpackage.json", "react-18.2.0-package.json"):
            assert (await http.get(f"/graphiql-assets/{name}")).status_code == 404


async def test_the_storefront_page_allows_its_own_files_and_this_origin_only() -> None:
    async with client() as http:
        response = await http.get("/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "unsafe-inline" not in policy


async def test_without_the_demo_the_token_endpoint_hands_out_nothing() -> None:
    async with client() as http:
        response = await http.get("/demo/token")
    assert response.status_code == 204
    assert response.content == b""


async def test_production_serves_neither_the_storefront_nor_the_token_endpoint() -> None:
    production = client(
        bicameral_env="production",
        auth_jwks_url="https://issuer.example/jwks",
        auth_issuer="https://issuer.example",
        auth_audience="bicameral",
    )
    async with production as http:
        assert (await http.get("/")).status_code == 404
        assert (await http.get("/demo/token")).status_code == 404


def test_production_refuses_the_demo() -> None:
    with pytest.raises(SettingsError, match="DEMO"):
        Settings(
            bicameral_env="production",
            auth_jwks_url="https://issuer.example/jwks",
            auth_issuer="https://issuer.example",
            auth_audience="bicameral",
            demo=True,
        )
