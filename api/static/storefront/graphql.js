// A GraphQL client in a page: queries and mutations over HTTP, subscriptions over
// a WebSocket speaking graphql-transport-ws. Copy it; it is all a page needs.
//
//   const api = new GraphQLClient("/graphql", () => token);
//   const data = await api.request(`{ products { totalCount } }`);
//   const stop = api.subscribe(`subscription ($id: ID!) { productChanged(id: $id) { kind } }`,
//                              { id }, (data) => ..., (error) => ...);
//   stop();

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.errors = errors;
    // The stable code the service gives every error (docs/graphql.md).
    this.code = errors[0]?.extensions?.code;
  }
}

export class GraphQLClient {
  constructor(url, getToken = () => null) {
    this.url = new URL(url, window.location.href);
    this.getToken = getToken;
  }

  authorization() {
    const token = this.getToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  // The answer's `data`; a GraphQLError when it has errors.
  async request(query, variables = {}) {
    const response = await fetch(this.url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
        ...this.authorization(),
      },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors?.length) throw new GraphQLError(body.errors);
    return body.data;
  }

  // Calls onData with each result's `data` until the returned function is called.
  subscribe(query, variables, onData, onError = console.error) {
    const url = new URL(this.url);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url, "graphql-transport-ws");
    const send = (message) => socket.send(JSON.stringify(message));
    let stopped = false;

    socket.onopen = () => send({ type: "connection_init", payload: this.authorization() });
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "connection_ack":
          send({ id: "1", type: "subscribe", payload: { query, variables } });
          break;
        case "ping":
          send({ type: "pong" });
          break;
        case "next":
          if (message.payload.errors?.length) onError(new GraphQLError(message.payload.errors));
          else onData(message.payload.data);
          break;
        case "error":
          onError(new GraphQLError(message.payload));
          break;
        case "complete":
          socket.close(1000);
          break;
      }
    };
    socket.onclose = (event) => {
      if (!stopped && event.code !== 1000) {
        onError(new Error(`subscription closed: ${event.code} ${event.reason}`));
      }
    };

    return () => {
      stopped = true;
      if (socket.readyState === WebSocket.OPEN) send({ id: "1", type: "complete" });
      socket.close(1000);
    };
  }
}
