// Apollo Client 4 against a running Bicameral, set up as docs/graphql.md
// ("Clients") shows: InMemoryCache with the committed possibleTypes, an HTTP
// link, and a graphql-ws link with the token in connectionParams.
//
// Env: BICAMERAL_URL (http://host:port), BICAMERAL_TOKEN (an admin's).
// Prints one JSON object with what each step saw; the pytest side asserts.

import { readFileSync } from "node:fs";
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const { url, token } = JSON.parse(process.argv[2]);
const possibleTypes = JSON.parse(
  readFileSync(new URL("../../possible-types.json", import.meta.url), "utf-8"),
);

function client(withPossibleTypes) {
  const http = new HttpLink({
    uri: `${url}/graphql`,
    headers: { Authorization: `Bearer ${token}` },
  });
  const ws = new GraphQLWsLink(
    createClient({
      url: `${url.replace(/^http/, "ws")}/graphql`,
      // Node has no browser WebSocket; a browser needs no webSocketImpl.
      webSocketImpl: WebSocket,
      connectionParams: () => ({ Authorization: `Bearer ${token}` }),
    }),
  );
  const link = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === "OperationDefinition" && definition.operation === "subscription";
    },
    ws,
    http,
  );
  const cache = withPossibleTypes ? new InMemoryCache({ possibleTypes }) : new InMemoryCache();
  return { apollo: new ApolloClient({ link, cache }), ws };
}

const CREATE = gql`
  mutation Create($input: CreateProductInput!) {
    createProduct(input: $input) {
      __typename
      ... on CreateProductSuccess { product { id sku name } }
      ... on Error { code field message }
    }
  }
`;

// A query whose answer holds a union: read through the cache on its way back.
const PRODUCT = gql`
  query Product($sku: String!) {
    product(sku: $sku) { id sku name }
  }
`;

const CHANGES = gql`
  subscription Changes {
    changes(types: [PRODUCT]) { entityType kind product { sku } }
  }
`;

async function refused(apollo) {
  const { data } = await apollo.mutate({
    mutation: CREATE,
    variables: { input: { sku: "APOLLO-1", name: "Apollo", price: 0, currency: "EUR" } },
  });
  return data.createProduct;
}

const out = {};
const withMap = client(true);
const without = client(false);

out.errorWithPossibleTypes = await refused(withMap.apollo);
out.errorWithoutPossibleTypes = await refused(without.apollo);

// A subscription over graphql-ws, authorised by connectionParams: it hears the
// product that the next mutation creates.
const heard = new Promise((resolve, reject) => {
  const subscription = withMap.apollo.subscribe({ query: CHANGES }).subscribe({
    next: ({ data }) => {
      if (data?.changes?.product?.sku === "APOLLO-2") {
        subscription.unsubscribe();
        resolve(data.changes);
      }
    },
    error: reject,
  });
});
// The subscription is live once the server has acknowledged it; a mutation
// sent before could be missed, so send it after a moment, and again if needed.
await new Promise((resolve) => setTimeout(resolve, 1000));
const created = await withMap.apollo.mutate({
  mutation: CREATE,
  variables: { input: { sku: "APOLLO-2", name: "Apollo two", price: 990, currency: "EUR" } },
});
out.created = created.data.createProduct;
out.heard = await Promise.race([
  heard,
  new Promise((_, reject) => setTimeout(() => reject(new Error("no notification in 20 s")), 20000)),
]);
const read = await withMap.apollo.query({ query: PRODUCT, variables: { sku: "APOLLO-2" } });
out.product = read.data.product;

console.log(JSON.stringify(out));
withMap.apollo.stop();
without.apollo.stop();
await withMap.ws.client.dispose();
await without.ws.client.dispose();
