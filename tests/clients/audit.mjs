// The GraphQL-over-HTTP spec's audit (graphql-http's auditServer) against a server.
// Argument: {"url": "http://127.0.0.1:PORT/graphql"}. Prints every audit's result.
import { auditServer } from "graphql-http";

const { url } = JSON.parse(process.argv[2]);
const results = await auditServer({ url });
console.log(
  JSON.stringify(
    results.map(({ id, name, status, reason }) => ({ id, name, status, reason: reason ?? null })),
  ),
);
