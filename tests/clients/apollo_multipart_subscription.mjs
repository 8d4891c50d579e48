// Apollo Client 4 subscribing over HTTP (its multipart protocol, no WebSocket):
// hears a change a mutation makes, then, resubscribed with `after`, only what came
// after that change. Argument: {"url": ".../graphql", "token": "<admin token>"}.
// Prints {"first": [...notifications], "resumed": [...notifications], "product": id,
// "refused": {"codes": [...], "completed": bool}}.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";

const { url, token } = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 60_000;
setTimeout(() => {
  console.error(`no answer within ${TIMEOUT_MS} ms`);
  process.exit(2);
}, TIMEOUT_MS).unref();

const client = new ApolloClient({
  link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
  cache: new InMemoryCache(),
});

const CREATE = gql`
  mutation Create($input: CreateProductInput!) {
    createProduct(input: $input) {
      __typename
      ... on CreateProductSuccess { consistencyToken product { id } }
      ... on Error { code message }
    }
  }
`;
const CHANGE_PRICE = gql`
  mutation ChangePrice($input: ChangePriceInput!) {
    changePrice(input: $input) {
      __typename
      ... on ChangePriceSuccess { consistencyToken }
      ... on Error { code message }
    }
  }
`;
const PRODUCT_CHANGED = gql`
  subscription ProductChanged($id: ID!, $after: String) {
    productChanged(id: $id, after: $after) { entityType id version position kind }
  }
`;

async function mutate(mutation, input, field) {
  const { data, error } = await client.mutate({ mutation, variables: { input } });
  if (error) throw error;
  const result = data[field];
  if (!result.consistencyToken) throw new Error(`${field}: ${JSON.stringify(result)}`);
  return result;
}

// Subscribe, and resolve with the first `count` notifications (then unsubscribe,
// which aborts the request).
function notifications(variables, count) {
  return new Promise((resolve, reject) => {
    const heard = [];
    const subscription = client
      .subscribe({ query: PRODUCT_CHANGED, variables })
      .subscribe({
        next: ({ data, error }) => {
          if (error) return reject(error);
          heard.push(data.productChanged);
          if (heard.length === count) {
            subscription.unsubscribe();
            resolve(heard);
          }
        },
        error: reject,
        complete: () => reject(new Error(`completed after ${heard.length} of ${count}`)),
      });
  });
}

const sku = `APOLLO-${Date.now()}`;
const created = await mutate(
  CREATE,
  { sku, name: "Heard over HTTP", price: 100, currency: "EUR" },
  "createProduct",
);
const id = created.product.id;

// From the creation on: whether the price change lands before or after the
// stream is set up, `after` makes sure it is heard (replayed, or live).
const first = notifications({ id, after: created.consistencyToken }, 1);
await mutate(CHANGE_PRICE, { productId: id, price: 200 }, "changePrice");
const heardFirst = await first;

// Not listening now: a change is made, then a resume from the last position heard
// gets it, and the live change after it, and nothing heard before.
await mutate(CHANGE_PRICE, { productId: id, price: 300 }, "changePrice");
const resumed = notifications({ id, after: heardFirst[0].position }, 2);
await mutate(CHANGE_PRICE, { productId: id, price: 400 }, "changePrice");
const heardResumed = await resumed;

// A subscription the policy refuses (the whole feed is staff's; this client has no
// token): Apollo hears the coded error, and the stream's end.
const anonymous = new ApolloClient({ link: new HttpLink({ uri: url }), cache: new InMemoryCache() });
const refused = await new Promise((resolve, reject) => {
  const seen = { codes: [], completed: false };
  anonymous.subscribe({ query: gql`subscription { changes { id } }` }).subscribe({
    next: ({ error }) => {
      for (const e of error?.errors ?? []) seen.codes.push(e.extensions?.code);
    },
    error: (error) => {
      for (const e of error?.errors ?? []) seen.codes.push(e.extensions?.code);
      resolve(seen);
    },
    complete: () => resolve({ ...seen, completed: true }),
  });
  setTimeout(() => reject(new Error(`no end: ${JSON.stringify(seen)}`)), 20_000).unref();
});

console.log(JSON.stringify({ product: id, first: heardFirst, resumed: heardResumed, refused }));
