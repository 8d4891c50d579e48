// A product list Relay pages forward with @connection, refetchable as a whole.
import { graphql } from "react-relay";

export const ProductList = graphql`
  fragment ProductList_query on Query
  @argumentDefinitions(
    count: { type: "Int", defaultValue: 10 }
    cursor: { type: "String" }
    search: { type: "String" }
  )
  @refetchable(queryName: "ProductListPaginationQuery") {
    products(search: $search, first: $count, after: $cursor)
      @connection(key: "ProductList_products", filters: ["search"]) {
      totalCount
      edges {
        node {
          id
          ...ProductCard_product
        }
      }
    }
  }
`;

export const ProductListQuery = graphql`
  query ProductListQuery {
    ...ProductList_query
  }
`;
