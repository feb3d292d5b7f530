"""A bound on how many objects one operation may ask for.

Depth and token limits do not stop breadth: `tracks(first: 100) { artist { tracks(first:
100) { artist { tracks(first: 100) ... } } } }` stays shallow yet asks for a million
objects. Before execution, with the variables known, each field taking `first` multiplies
what is selected below it; the sum over the operation must stay under the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import SchemaExtension

from tunelytics.resolvers.errors import BadUserInput


def _first(node: FieldNode, default: Any, variables: Mapping[str, Any]) -> int:
    for argument in node.arguments or ():
        if argument.name.value != "first":
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return given if isinstance(given, int) else int(default or 1)
    return int(default) if isinstance(default, int) else 1


class _Estimate:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def fields(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLObjectType,
        seen: frozenset[str],
    ) -> Iterator[tuple[FieldNode, GraphQLObjectType, frozenset[str]]]:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                yield selection, parent, seen
            elif isinstance(selection, InlineFragmentNode):
                yield from self.fields(selection.selection_set, self._type(selection, parent), seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:  # cycles fail validation anyway
                    yield from self.fields(
                        fragment.selection_set, self._type(fragment, parent), seen | {name}
                    )

    def _type(
        self, node: InlineFragmentNode | FragmentDefinitionNode, parent: GraphQLObjectType
    ) -> GraphQLObjectType:
        if node.type_condition is None:
            return parent
        found = self.schema.get_type(node.type_condition.name.value)
        return found if isinstance(found, GraphQLObjectType) else parent

    def objects(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLObjectType,
        seen: frozenset[str],
    ) -> int:
        """How many objects this selection asks for, per parent object."""
        total = 0
        for node, owner, fragments in self.fields(selection_set, parent, seen):
            definition = owner.fields.get(node.name.value)
            if definition is None:
                continue
            child = get_named_type(definition.type)
            if not isinstance(child, GraphQLObjectType):
                continue
            argument = definition.args.get("first")
            many = _first(node, argument.default_value, self.variables) if argument else 1
            total += many * (1 + self.objects(node.selection_set, child, fragments))
        return total


def estimate_objects(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    return _Estimate(schema, fragments, variables).objects(
        operation.selection_set, root, frozenset()
    )


def query_cost_limit(max_objects: int) -> type[SchemaExtension]:
    class QueryCost(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            context = self.execution_context
            document = context.graphql_document
            if document is not None:
                fragments = {
                    d.name.value: d
                    for d in document.definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
                operations = [
                    d for d in document.definitions if isinstance(d, OperationDefinitionNode)
                ]
                name = context.operation_name
                chosen = [
                    o for o in operations if name is None or (o.name and o.name.value == name)
                ]
                schema = context.schema._schema
                for operation in chosen[:1]:
                    asked = estimate_objects(schema, operation, fragments, context.variables or {})
                    if asked > max_objects:
                        raise BadUserInput(
                            f"this operation may return about {asked} objects; the limit is "
                            f"{max_objects}: ask for smaller pages",
                            estimatedObjects=asked,
                            maxObjects=max_objects,
                        )
            yield

    return QueryCost
