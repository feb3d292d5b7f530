"""The product's knowledge: entities, rules and models. No GraphQL, no MongoDB."""
