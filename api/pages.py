"""The pages the service serves itself: GraphiQL on GET /graphql and the storefront at /.

GraphiQL's assets (React, GraphiQL, its explorer plugin) are served from this
machine when `make graphiql-assets` has fetched them (api/graphiql_assets,
pinned by its package-lock.json, never committed), else from the CDN; the same
files either way (the Subresource Integrity hashes below hold both to one
content). Each page is sent with a Content Security Policy that allows exactly
what it loads: its own scripts and styles, the CDN only when the assets come
from there, and GraphQL over HTTP and WebSocket to this origin.

The storefront is plain HTML and JavaScript modules under api/static (no build
step, nothing from elsewhere). It acts as the demo customer with a token from
/demo/token, which exists only while the demo is on (docs/frontend.md says why).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["GRAPHIQL_ASSETS", "graphiql_response", "local_assets_present", "page_routes"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_DIR = Path(__file__).resolve().parent / "graphiql_assets" / "node_modules"
CDN = "https://unpkg.com"


@dataclass(frozen=True)
class Asset:
    """One file of an npm package, at the version api/graphiql_assets/package.json pins."""

    package: str
    version: str
    path: str
    integrity: str

    @property
    def name(self) -> str:
        return f"{self.package.replace('/', '-').lstrip('@')}-{self.version}-{Path(self.path).name}"

    @property
    def local_file(self) -> Path:
        return ASSETS_DIR / self.package / self.path

    @property
    def cdn_url(self) -> str:
        return f"{CDN}/{self.package}@{self.version}/{self.path}"

    @property
    def is_script(self) -> bool:
        return self.path.endswith(".js")


# In the order the page loads them: React before GraphiQL, GraphiQL before the plugin.
GRAPHIQL_ASSETS = (
    Asset(
        "react",
        "18.2.0",
        "umd/react.production.min.js",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
    ),
    Asset(
        "react-dom",
        "18.2.0",
        "umd/react-dom.production.min.js",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
    ),
    Asset(
        "graphiql",
        "3.8.3",
        "graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
    Asset(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "dist/style.css",
        "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
    ),
    Asset(
        "graphiql",
        "3.8.3",
        "graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    Asset(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "dist/index.umd.js",
        "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
    ),
)
_BY_NAME = {asset.name: asset for asset in GRAPHIQL_ASSETS}


def local_assets_present() -> bool:
    return all(asset.local_file.is_file() for asset in GRAPHIQL_ASSETS)


def _policy(*, extra_sources: str = "") -> str:
    """The Content Security Policy of a page that loads only its own files (and, for
    GraphiQL from the CDN, that CDN's) and talks GraphQL to this origin."""
    sources = f"'self' {extra_sources}".strip()
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {sources}",
            f"style-src {sources}",
            # GraphiQL's stylesheet and icons use data: URLs; the favicon is one too.
            "img-src 'self' data:",
            "font-src 'self' data:",
            # 'self' covers ws:// and wss:// to the same host (CSP level 3).
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


_PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def graphiql_response() -> Response:
    """GraphiQL's page: its assets from this machine when present, else from the CDN."""
    local = local_assets_present()
    tags = []
    for asset in GRAPHIQL_ASSETS:
        url = f"/graphiql-assets/{asset.name}" if local else asset.cdn_url
        attributes = f'integrity="{asset.integrity}" crossorigin="anonymous"'
        if asset.is_script:
            tags.append(f'<script src="{url}" {attributes}></script>')
        else:
            tags.append(f'<link rel="stylesheet" href="{url}" {attributes}>')
    source = "this server" if local else CDN
    page = (STATIC_DIR / "graphiql.html").read_text()
    page = page.replace("<!-- assets -->", "\n    ".join(tags))
    page = page.replace("{source}", html.escape(source))
    headers = {
        **_PAGE_HEADERS,
        "Content-Security-Policy": _policy(extra_sources="" if local else CDN),
    }
    return HTMLResponse(page, headers=headers)


async def _graphiql_asset(request: Request) -> Response:
    # Only the files listed above, never anything else under node_modules.
    asset = _BY_NAME.get(request.path_params["name"])
    if asset is None or not asset.local_file.is_file():
        return JSONResponse({"error": "no such asset"}, status_code=404)
    # The name carries the version, so a browser may keep it for good.
    return FileResponse(
        asset.local_file, headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


async def _storefront(_: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "storefront" / "index.html",
        headers={**_PAGE_HEADERS, "Content-Security-Policy": _policy()},
    )


# The storefront's token lasts a working day, as the ones `serve --demo` prints.
_DEMO_TOKEN_TTL = timedelta(hours=12)


def _demo_token(app: Any) -> Any:
    async def demo_token(_: Request) -> Response:
        from api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
        from api.demo import DEMO_CUSTOMER_EMAIL, demo_customer_id
        from api.identity import Role

        settings = app.settings
        # No demo, no customer: the page browses as a guest. 204 rather than 404, which
        # a browser reports as an error on the console of every page load.
        if not (settings.demo and settings.uses_local_signing_key):
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        customer_id = await demo_customer_id(app)
        if customer_id is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        token = LocalSigningKey.load_or_create(settings.data_dir).token(
            role=Role.CUSTOMER,
            subject="demo-ada",
            customer_id=customer_id,
            ttl=_DEMO_TOKEN_TTL,
            issuer=settings.auth_issuer or LOCAL_ISSUER,
            audience=settings.auth_audience or LOCAL_AUDIENCE,
            role_claim=settings.auth_role_claim,
            customer_claim=settings.auth_customer_claim,
        )
        return JSONResponse(
            {"token": token, "customerId": customer_id, "email": DEMO_CUSTOMER_EMAIL},
            headers={"Cache-Control": "no-store"},
        )

    return demo_token


def page_routes(app: Any) -> list[BaseRoute]:
    """The pages' own files; GraphiQL's local assets while GraphiQL is on; outside
    production, the storefront and /demo/token, which hands out the demo customer's
    token while DEMO is on (and the local signing key in use), else nothing (204)."""
    settings = app.settings
    routes: list[BaseRoute] = [Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")]
    if settings.graphiql:
        routes.append(Route("/graphiql-assets/{name}", _graphiql_asset))
    # A demonstration, not a shop: production serves the API alone (and refuses DEMO).
    if not settings.is_production:
        routes.append(Route("/", _storefront))
        routes.append(Route("/demo/token", _demo_token(app)))
    return routes
