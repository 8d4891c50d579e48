"""GraphiQL and the storefront in a real browser (Chromium through Playwright), offline.

Every request the pages make outside 127.0.0.1 is refused (and recorded), so
these pass only when the pages need nothing from the internet. A console error,
an uncaught exception or a Content Security Policy violation (Chromium reports
those on the console) fails the test.

Debian's `chromium` drives them (`tools/install.sh test` installs it); without
it the tests fail, they are never skipped. `BICAMERAL_SCREENSHOTS=docs` writes
screenshots of both pages into that folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from api.identity import Role
from api.pages import local_assets_present
from tests.e2e.conftest import Server, migrated_and_serving, serve_env

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("BICAMERAL_SCREENSHOTS")
# Generous: a page on a loaded 2-core machine; only a hang should reach it.
DEADLINE_MS = 20_000

pytestmark = pytest.mark.elasticsearch


@pytest.fixture(scope="module")
def demo(elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`bicameral serve` with DEMO on (as `serve --demo`): demo data and /demo/token."""
    if not local_assets_present():
        pytest.fail(
            "GraphiQL's assets are not fetched (offline it would use the CDN): "
            "run `make graphiql-assets`"
        )
    folder = tmp_path_factory.mktemp("browser")
    env = serve_env(elasticsearch_url, folder, DEMO="true")
    with migrated_and_serving(env, folder / "serve.log") as server:
        yield server


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(tools/install.sh test installs it)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium))
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.blocked == [], f"the page reached beyond 127.0.0.1: {self.blocked}"
        assert self.errors == [], f"errors on the page: {self.errors}"


async def open_page(browser: Browser, url: str, *, refuse: tuple[str, ...] = ()) -> Watched:
    """`url` in a fresh context whose network ends at 127.0.0.1; paths starting with
    one of `refuse` are refused too."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    watched = Watched(page)

    async def offline(route: Route) -> None:
        target = urlsplit(route.request.url)
        if target.hostname != "127.0.0.1" or target.path.startswith(refuse):
            watched.blocked.append(route.request.url)
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await context.route("**/*", offline)
    page.on(
        "console",
        lambda message: watched.errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    await page.goto(url)
    return watched


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / name))


async def graphql(server: Server, query: str, role: Role = Role.ADMIN, **variables: Any) -> Any:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{server.url}/graphql",
            json={"query": query, "variables": variables},
            headers=server.headers(role),
        )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def product_id(server: Server, sku: str) -> str:
    data = await graphql(server, "query ($sku: String) { product(sku: $sku) { id } }", sku=sku)
    return str(data["product"]["id"])


async def receive_stock(server: Server, product: str, quantity: int) -> None:
    data = await graphql(
        server,
        "mutation ($input: ReceiveStockInput!) { receiveStock(input: $input) { __typename } }",
        input={"productId": product, "quantity": quantity},
    )
    assert data["receiveStock"]["__typename"] == "ReceiveStockSuccess", data


async def deliver_until_seen(
    server: Server, product: str, page: Page, seen: Callable[[], Awaitable[bool]]
) -> None:
    """Receive stock until `seen()`. A page's subscription is live a moment after it is
    sent; a change before that is not for it (it asked for no replay), so one delivery
    at a guess could be missed."""
    for _ in range(30):
        await receive_stock(server, product, 1)
        for _ in range(10):
            if await seen():
                return
            await page.wait_for_timeout(100)
    pytest.fail("no change reached the page")


# -- GraphiQL ---------------------------------------------------------------------------


async def set_editor(page: Page, selector: str, text: str) -> None:
    # CodeMirror 5 keeps its instance on its wrapper; typing would fight auto-closing brackets.
    await page.locator(selector).first.wait_for(state="attached")
    await page.evaluate(
        "([selector, text]) => document.querySelector(selector).CodeMirror.setValue(text)",
        [selector, text],
    )


async def run_in_graphiql(page: Page, query: str) -> None:
    await set_editor(page, ".graphiql-query-editor .CodeMirror", query)
    # GraphiQL takes in an edit (the parsed document that says whether it is a
    # subscription, for the WebSocket, or not) a moment later, then stores the query.
    await page.wait_for_function(
        "(query) => localStorage.getItem('graphiql:query') === query", arg=query
    )
    await page.click(".graphiql-execute-button")


_RESPONSE = "() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"


async def response_has(page: Page, expected: str) -> bool:
    return expected in await page.evaluate(_RESPONSE)


async def graphiql_result(page: Page, expected: str) -> dict[str, Any]:
    """The response pane's JSON once it contains `expected`."""
    await page.wait_for_function(f"(expected) => ({_RESPONSE})().includes(expected)", arg=expected)
    result: dict[str, Any] = json.loads(await page.evaluate(_RESPONSE))
    return result


async def test_graphiql_runs_a_query_and_a_mutation_with_no_network_but_this_machine(
    demo: Server, browser: Browser
) -> None:
    watched = await open_page(browser, f"{demo.url}/graphql")
    page = watched.page
    await run_in_graphiql(
        page, '{ products(search: "kettle") { totalCount edges { node { sku } } } }'
    )
    result = await graphiql_result(page, "KET-001")
    assert result["data"]["products"]["totalCount"] == 1

    await page.get_by_role("button", name="Headers").click()
    headers = json.dumps({"Authorization": f"Bearer {demo.token(Role.STAFF)}"})
    await set_editor(
        page, ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror", headers
    )
    # Taken in (and kept, shouldPersistHeaders) a moment later, as the query is.
    await page.wait_for_function(
        "(headers) => localStorage.getItem('graphiql:headers') === headers", arg=headers
    )
    await run_in_graphiql(
        page,
        'mutation { createProduct(input: {sku: "GRA-1", name: "Graphite pencil", price: 150, '
        'currency: "EUR", category: "stationery", initialStock: 9}) { __typename '
        "... on CreateProductSuccess { product { sku } } } }",
    )
    created = await graphiql_result(page, "CreateProductSuccess")
    assert created["data"]["createProduct"]["product"]["sku"] == "GRA-1"
    # The docs pane reads the schema by introspection.
    await page.get_by_role("button", name="Show Documentation Explorer").click()
    await page.get_by_text("A GraphQL schema provides a root type").wait_for()
    await page.get_by_role("button", name="Prettify query").click()
    await screenshot(page, "graphiql.png")
    watched.assert_clean()


async def test_graphiql_shows_a_subscription_live(demo: Server, browser: Browser) -> None:
    mug = await product_id(demo, "MUG-002")
    watched = await open_page(browser, f"{demo.url}/graphql")
    page = watched.page
    # GraphiQL tells a subscription from a query by the schema it fetched: one run
    # before the schema is in goes over HTTP (and is refused) rather than a WebSocket.
    await page.wait_for_function(
        "() => document.querySelector('.graphiql-query-editor .CodeMirror')"
        "?.CodeMirror.options.lint?.schema"
    )
    await run_in_graphiql(
        page,
        f'subscription {{ productChanged(id: "{mug}") '
        "{ kind product { sku stock { onHand } } } }",
    )
    # The subscription is open once GraphiQL offers to stop it.
    await page.locator(".graphiql-execute-button[aria-label^='Stop']").wait_for()
    await deliver_until_seen(demo, mug, page, lambda: response_has(page, "StockReceived"))
    result = await graphiql_result(page, "StockReceived")
    assert result["data"]["productChanged"]["product"]["sku"] == "MUG-002"
    watched.assert_clean()


async def test_graphiql_says_so_when_its_assets_cannot_load(demo: Server, browser: Browser) -> None:
    # As on a machine without `make graphiql-assets` and without the internet.
    watched = await open_page(browser, f"{demo.url}/graphql", refuse=("/graphiql-assets/",))
    alert = watched.page.get_by_role("alert")
    await alert.wait_for()
    assert "GraphiQL cannot start" in await alert.inner_text()
    assert "make graphiql-assets" in await alert.inner_text()
    assert any("GraphiQL cannot start" in error for error in watched.errors)
    assert "Loading" not in await watched.page.inner_text("body")


async def test_graphiql_is_sent_with_a_content_security_policy(demo: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(f"{demo.url}/graphql", headers={"Accept": "text/html"})
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy  # the assets are local: no CDN allowed
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


# -- the storefront -------------------------------------------------------------------------


async def test_the_storefront_searches_with_facets_and_pages(
    demo: Server, browser: Browser
) -> None:
    watched = await open_page(browser, f"{demo.url}/")
    page = watched.page
    await page.get_by_text("Signed in as ada@example.com").wait_for()
    products = page.locator(".products li")
    await page.get_by_text("Page 1 of 2").wait_for()
    first_page = await products.all_inner_texts()
    await page.get_by_role("button", name="Next").click()
    await page.get_by_text("Page 2 of 2").wait_for()
    assert set(await products.all_inner_texts()).isdisjoint(first_page)

    await page.get_by_label("outdoor (2)").check()
    await page.get_by_text("2 products").wait_for()
    names = await page.locator(".products li a").all_inner_texts()
    assert sorted(names) == ["Head torch", "Two-person tent"]

    await page.get_by_placeholder("Search the catalog").fill("tent")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_text("1 product", exact=True).wait_for()
    assert await page.locator(".products li a").all_inner_texts() == ["Two-person tent"]
    watched.assert_clean()


async def test_the_storefront_shows_stock_live_and_an_order_at_once(
    demo: Server, browser: Browser
) -> None:
    torch = await product_id(demo, "LMP-004")
    watched = await open_page(browser, f"{demo.url}/#/product/{torch}")
    page = watched.page
    stock = page.locator("#stock")
    await page.get_by_role("heading", name="Head torch").wait_for()
    before = int(await stock.inner_text())

    # A delivery elsewhere reaches the open page through its subscription.
    await deliver_until_seen(demo, torch, page, lambda: page.locator("#stock.changed").is_visible())
    await page.wait_for_function(
        "(before) => Number(document.getElementById('stock').textContent) > before", arg=before
    )
    await screenshot(page, "storefront-product.png")

    await page.get_by_label("Quantity").fill("3")
    await page.get_by_role("button", name="Place order").click()
    placed = page.locator("#orders tr.new")
    await placed.wait_for()
    assert "3 \N{MULTIPLICATION SIGN} Head torch" in await placed.inner_text()
    order_id = await placed.get_attribute("data-order-id")
    orders = await graphql(
        demo, "query ($id: ID!) { order(id: $id) { lines { sku quantity } } }", id=order_id
    )
    assert orders["order"]["lines"] == [{"sku": "LMP-004", "quantity": 3}]
    await screenshot(page, "storefront-orders.png")
    watched.assert_clean()


async def test_a_screenshot_of_the_storefront_catalog(demo: Server, browser: Browser) -> None:
    watched = await open_page(browser, f"{demo.url}/")
    await watched.page.get_by_text("Page 1 of").wait_for()
    assert await watched.page.locator(".products li").count() > 0
    await screenshot(watched.page, "storefront.png")
    watched.assert_clean()
