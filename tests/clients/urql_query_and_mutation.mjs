// urql against a running Bicameral, set up as docs/graphql.md ("Clients")
// shows: fetch for queries and mutations, graphql-ws for subscriptions with
// the token in connectionParams, and either cache: urql's document cache
// (needs nothing) or Graphcache, normalised, with the committed possibleTypes.
//
// Env: BICAMERAL_URL (http://host:port), BICAMERAL_TOKEN (an admin's).
// Prints one JSON object with what each step saw; the pytest side asserts.

import { readFileSync } from "node:fs";
import {
  Client,
  cacheExchange as documentCache,
  fetchExchange,
  gql,
  subscriptionExchange,
} from "@urql/core";
import { cacheExchange as graphcache } from "@urql/exchange-graphcache";
import { createClient as createWSClient } from "graphql-ws";
import WebSocket from "ws";

const { url, token } = JSON.parse(process.argv[2]);
const possibleTypes = JSON.parse(
  readFileSync(new URL("../../possible-types.json", import.meta.url), "utf-8"),
);

const wsClient = createWSClient({
  url: `${url.replace(/^http/, "ws")}/graphql`,
  webSocketImpl: WebSocket, // Node only; a browser has its own
  connectionParams: () => ({ Authorization: `Bearer ${token}` }),
});

function client(cache) {
  return new Client({
    url: `${url}/graphql`,
    fetchOptions: () => ({ headers: { Authorization: `Bearer ${token}` } }),
    exchanges: [
      cache,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({
            unsubscribe: wsClient.subscribe({ ...request, query: request.query || "" }, sink),
          }),
        }),
      }),
    ],
  });
}

const clients = {
  document: client(documentCache),
  graphcache: client(
    graphcache({
      possibleTypes,
      // Objects without an id of their own are kept inside their parent.
      keys: { Money: () => null, Stock: () => null, ChangeNotification: () => null },
    }),
  ),
};

const CREATE = gql`
  mutation Create($input: CreateProductInput!) {
    createProduct(input: $input) {
      __typename
      ... on CreateProductSuccess { consistencyToken product { id sku name price { amount currency } } }
      ... on Error { code field message }
    }
  }
`;

const PRODUCT = gql`
  query Product($sku: String!, $token: String) {
    product(sku: $sku, consistencyToken: $token) { id sku name price { amount currency } }
  }
`;

async function run(client, sku) {
  const out = {};
  const input = { sku, name: "Urql", price: 1250, currency: "EUR" };
  const created = await client.mutation(CREATE, { input }).toPromise();
  out.created = created.data?.createProduct ?? { error: String(created.error) };
  const refused = await client.mutation(CREATE, { input: { ...input, price: 0 } }).toPromise();
  out.refused = refused.data?.createProduct ?? { error: String(refused.error) };
  const read = await client
    .query(PRODUCT, { sku, token: out.created.consistencyToken })
    .toPromise();
  out.product = read.data?.product ?? { error: String(read.error) };
  return out;
}

const out = {
  document: await run(clients.document, "URQL-1"),
  graphcache: await run(clients.graphcache, "URQL-2"),
};
console.log(JSON.stringify(out));
await wsClient.dispose();
