// Orders, newest last: Relay pages backward (last, before) with @connection.
import { graphql } from "react-relay";

export const OrderHistory = graphql`
  fragment OrderHistory_query on Query
  @argumentDefinitions(
    count: { type: "Int", defaultValue: 5 }
    cursor: { type: "String" }
  )
  @refetchable(queryName: "OrderHistoryPaginationQuery") {
    orders(sort: OLDEST, last: $count, before: $cursor)
      @connection(key: "OrderHistory_orders") {
      edges {
        node {
          id
          status
          total {
            amount
          }
        }
      }
    }
  }
`;

export const OrderRefetch = graphql`
  fragment OrderHistory_order on Order
  @refetchable(queryName: "OrderHistoryOrderRefetchQuery") {
    id
    status
  }
`;

export const CustomerRefetch = graphql`
  fragment OrderHistory_customer on Customer
  @refetchable(queryName: "OrderHistoryCustomerRefetchQuery") {
    id
    name
  }
`;
