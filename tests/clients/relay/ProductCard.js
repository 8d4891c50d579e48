// One product, refetched by Relay through node(id:).
import { graphql } from "react-relay";

export const ProductCard = graphql`
  fragment ProductCard_product on Product
  @refetchable(queryName: "ProductCardRefetchQuery") {
    id
    sku
    name
    price {
      amount
      currency
    }
    stock {
      available
    }
  }
`;
