// Starts GraphiQL on this page, or says plainly why it cannot.
//
// The page loads React, GraphiQL and the explorer plugin as classic scripts
// before this module runs (api/pages.py writes their tags). A script that could
// not load (offline, a proxy, a blocked CDN) leaves its global undefined: then
// this names what is missing instead of leaving "Loading..." on screen.

const container = document.getElementById("graphiql");
const source = container.dataset.source;

const NEEDED = {
  React: "React",
  ReactDOM: "ReactDOM",
  GraphiQL: "GraphiQL",
  GraphiQLPluginExplorer: "the explorer plugin",
};

const EXAMPLE = `# Bicameral. Queries read Elasticsearch, mutations
# write the database, subscriptions say what changed.
# The schema: the Docs pane (top left). A token:
# \`make run\` prints one per role; in Headers, send
# {"Authorization": "Bearer <token>"}

{
  products(first: 5) {
    totalCount
    edges { node { id sku name price { amount currency } stock { available } } }
  }
}
`;

function showError(missing) {
  container.replaceChildren();
  const message = document.createElement("div");
  message.className = "page-message error";
  message.setAttribute("role", "alert");
  const heading = document.createElement("p");
  heading.textContent =
    `GraphiQL cannot start: ${missing.join(", ")} did not load from ${source}.`;
  const help = document.createElement("p");
  help.innerHTML =
    source === "this server"
      ? "The files are listed but could not be read; run <code>make graphiql-assets</code> again."
      : "This machine may be offline or behind a proxy. Run <code>make graphiql-assets</code> " +
        "once (it fetches them with npm) and the service serves them itself.";
  message.append(heading, help);
  container.append(message);
  console.error(heading.textContent);
}

function start() {
  const endpoint = new URL("/graphql", window.location.href);
  const subscriptions = new URL(endpoint);
  subscriptions.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
  const fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: subscriptions.href,
  });
  const page = React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: EXAMPLE,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
    inputValueDeprecation: true,
  });
  container.replaceChildren();
  ReactDOM.createRoot(container).render(page);
}

const missing = Object.keys(NEEDED)
  .filter((name) => window[name] === undefined)
  .map((name) => NEEDED[name]);
if (missing.length > 0) {
  showError(missing);
} else {
  start();
}
