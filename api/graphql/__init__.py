"""``/graphql``: Strawberry over the query engine and the stores the REST routes read."""
