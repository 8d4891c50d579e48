// The storefront: search with facets and paging, a product whose stock follows a
// subscription, and orders placed as the demo customer. Views are picked by the
// URL's hash: #/ (catalog), #/product/<id>, #/orders.

import { GraphQLClient } from "./graphql.js";

const PAGE_SIZE = 4;

const PRODUCTS = `
  query Products($search: String, $filter: ProductFilterInput, $first: Int!, $after: String) {
    products(search: $search, filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id name price { amount currency } stock { available } } }
      facets { categories { value count } tags { value count } inStock }
    }
  }`;

const PRODUCT = `
  query Product($id: ID!) {
    product(id: $id) {
      id sku name description category tags
      price { amount currency }
      stock { available }
    }
  }`;

const STOCK_CHANGES = `
  subscription StockChanges($id: ID!) {
    productChanged(id: $id) { kind product { stock { available } } }
  }`;

const PLACE_ORDER = `
  mutation PlaceOrder($input: PlaceOrderInput!, $idempotencyKey: String) {
    placeOrder(input: $input, idempotencyKey: $idempotencyKey) {
      __typename
      ... on PlaceOrderSuccess { consistencyToken order { id } }
      ... on Error { code message }
    }
  }`;

const ORDERS = `
  query Orders($customerId: ID!, $consistencyToken: String) {
    orders(filter: { customerId: $customerId }, first: 20, consistencyToken: $consistencyToken) {
      totalCount
      edges {
        node {
          id status placedAt
          total { amount currency }
          lines { sku productName quantity }
        }
      }
    }
  }`;

// Who the page acts as: the demo customer when the service runs with --demo
// (it hands out that customer's token at /demo/token), else a guest.
let customer = null;
const api = new GraphQLClient("/graphql", () => customer?.token);

const view = document.getElementById("view");
const statusLine = document.getElementById("status");
let leaveView = () => {};

// The catalog's state survives a visit to a product page.
const catalog = { search: "", categories: [], tags: [], inStock: false, pages: [null] };

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value !== false && value !== null) element.setAttribute(name, value);
  }
  element.append(...children.flat(Infinity).filter((child) => child !== null));
  return element;
}

function money({ amount, currency }) {
  return new Intl.NumberFormat("en", { style: "currency", currency }).format(amount / 100);
}

function say(message, isError = false) {
  statusLine.textContent = message;
  statusLine.classList.toggle("error", isError);
}

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

// -- catalog ---------------------------------------------------------------------

function toggle(list, value) {
  const at = list.indexOf(value);
  if (at >= 0) list.splice(at, 1);
  else list.push(value);
  catalog.pages = [null];
  showCatalog();
}

function facetBox(title, values, chosen) {
  return [
    h("h3", {}, title),
    values.map(({ value, count }) =>
      h(
        "label",
        {},
        h("input", {
          type: "checkbox",
          checked: chosen.includes(value) && "checked",
          onchange: () => toggle(chosen, value),
        }),
        ` ${value || "(none)"} `,
        h("span", { class: "count" }, `(${count})`),
      ),
    ),
  ];
}

async function showCatalog() {
  const filter = {};
  if (catalog.categories.length) filter.categories = catalog.categories;
  if (catalog.tags.length) filter.tags = catalog.tags;
  if (catalog.inStock) filter.inStock = true;
  const page = catalog.pages.length - 1;
  const { products } = await api.request(PRODUCTS, {
    search: catalog.search || null,
    filter,
    first: PAGE_SIZE,
    after: catalog.pages[page],
  });

  const searchBox = h("input", {
    type: "search",
    name: "search",
    placeholder: "Search the catalog",
    value: catalog.search,
  });
  const form = h(
    "form",
    {
      class: "search",
      onsubmit: (event) => {
        event.preventDefault();
        catalog.search = searchBox.value.trim();
        catalog.pages = [null];
        showCatalog();
      },
    },
    searchBox,
    h("button", { type: "submit" }, "Search"),
  );
  const facets = products.facets;
  const sidebar = h(
    "aside",
    { class: "facets" },
    facetBox("Category", facets.categories, catalog.categories),
    facetBox("Tags", facets.tags, catalog.tags),
    h("h3", {}, "Availability"),
    h(
      "label",
      {},
      h("input", {
        type: "checkbox",
        checked: catalog.inStock && "checked",
        onchange: () => {
          catalog.inStock = !catalog.inStock;
          catalog.pages = [null];
          showCatalog();
        },
      }),
      " in stock ",
      h("span", { class: "count" }, `(${facets.inStock})`),
    ),
  );
  const list = h(
    "ul",
    { class: "products" },
    products.edges.map(({ node }) =>
      h(
        "li",
        {},
        h("a", { href: `#/product/${node.id}` }, node.name),
        h("span", {}, `${money(node.price)} · ${node.stock.available} in stock`),
      ),
    ),
  );
  const paging = h(
    "div",
    { class: "paging" },
    h(
      "button",
      {
        disabled: page === 0 && "disabled",
        onclick: () => {
          catalog.pages.pop();
          showCatalog();
        },
      },
      "Previous",
    ),
    h("span", {}, `Page ${page + 1} of ${Math.max(1, Math.ceil(products.totalCount / PAGE_SIZE))}`),
    h(
      "button",
      {
        disabled: !products.pageInfo.hasNextPage && "disabled",
        onclick: () => {
          catalog.pages.push(products.pageInfo.endCursor);
          showCatalog();
        },
      },
      "Next",
    ),
  );
  view.replaceChildren(
    form,
    h(
      "div",
      { class: "catalog" },
      sidebar,
      h("section", {}, h("p", {}, products.totalCount === 1 ? "1 product" : `${products.totalCount} products`), list, paging),
    ),
  );
}

// -- one product -------------------------------------------------------------------

async function showProduct(id) {
  const { product } = await api.request(PRODUCT, { id });
  if (product === null) {
    view.replaceChildren(h("p", {}, "No such product."));
    return;
  }
  const stock = h("span", { class: "stock", id: "stock" }, String(product.stock.available));
  const quantity = h("input", { type: "number", min: "1", value: "1", name: "quantity" });
  const orderForm = customer
    ? h(
        "form",
        {
          class: "order-form",
          onsubmit: (event) => {
            event.preventDefault();
            placeOrder(product.sku, Number(quantity.value));
          },
        },
        h("label", {}, "Quantity ", quantity),
        h("button", { type: "submit" }, "Place order"),
      )
    : h("p", {}, "Ordering needs a customer: start the service with `bicameral serve --demo`.");

  view.replaceChildren(
    h(
      "article",
      { class: "product" },
      h("h2", {}, product.name),
      h("p", {}, product.description),
      h("p", {}, `${product.category} · ${product.tags.join(", ")} · SKU ${product.sku}`),
      h("p", {}, h("strong", {}, money(product.price))),
      h("p", {}, "In stock: ", stock, h("span", { class: "count" }, " (updates live)")),
      orderForm,
    ),
    h("p", {}, h("a", { href: "#/" }, "Back to the catalog")),
  );

  // Every change to this product (an order elsewhere, a delivery) arrives here.
  leaveView = api.subscribe(
    STOCK_CHANGES,
    { id },
    (data) => {
      const changed = data.productChanged.product;
      if (changed === null) return;
      stock.textContent = String(changed.stock.available);
      stock.classList.add("changed");
      say(`Stock changed (${data.productChanged.kind}).`);
    },
    (error) => say(`Live stock stopped: ${error.message}`, true),
  );
}

async function placeOrder(sku, quantity) {
  const { placeOrder: result } = await api.request(PLACE_ORDER, {
    input: { customerId: customer.customerId, lines: [{ sku, quantity }] },
    idempotencyKey: newKey(),
  });
  if (result.__typename !== "PlaceOrderSuccess") {
    say(`Not ordered: ${result.message} (${result.code})`, true);
    return;
  }
  // The token makes the order list wait until the read side has this order.
  const query = new URLSearchParams({ token: result.consistencyToken, placed: result.order.id });
  window.location.hash = `#/orders?${query}`;
}

// -- orders --------------------------------------------------------------------------

async function showOrders(parameters) {
  if (!customer) {
    view.replaceChildren(h("p", {}, "Orders need a customer: start with `bicameral serve --demo`."));
    return;
  }
  const placed = parameters.get("placed");
  const { orders } = await api.request(ORDERS, {
    customerId: customer.customerId,
    consistencyToken: parameters.get("token"),
  });
  const rows = orders.edges.map(({ node }) =>
    h(
      "tr",
      { class: node.id === placed ? "new" : null, "data-order-id": node.id },
      h("td", {}, new Date(node.placedAt).toLocaleString("en")),
      h("td", {}, node.lines.map((l) => `${l.quantity} × ${l.productName ?? l.sku}`).join(", ")),
      h("td", {}, money(node.total)),
      h("td", {}, node.status.toLowerCase()),
    ),
  );
  view.replaceChildren(
    h("h2", {}, `My orders (${orders.totalCount})`),
    placed ? h("p", {}, "Your order is placed; it is the highlighted row.") : null,
    h(
      "table",
      { id: "orders" },
      h("thead", {}, h("tr", {}, ["Placed", "Lines", "Total", "Status"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows),
    ),
  );
}

// -- routing ---------------------------------------------------------------------------

async function route() {
  leaveView();
  leaveView = () => {};
  say("");
  const [path, query = ""] = window.location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "product" && parts[1]) await showProduct(decodeURIComponent(parts[1]));
    else if (parts[0] === "orders") await showOrders(new URLSearchParams(query));
    else await showCatalog();
  } catch (error) {
    say(`Something went wrong: ${error.message}`, true);
  }
}

async function signIn() {
  const who = document.getElementById("who");
  const response = await fetch("/demo/token");
  if (response.status === 200) {
    customer = await response.json();
    who.textContent = `Signed in as ${customer.email} (demo customer)`;
  } else {
    who.textContent = "Browsing as a guest";
  }
}

window.addEventListener("hashchange", route);
await signIn();
await route();
