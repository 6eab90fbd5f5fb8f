"""A restricted evaluator for the ``!!python/object/apply:eval`` tag of upstream configs.

Accepts literals, arithmetic, comparisons, ``range``/``int``/``float``/``round``/``min``/``max``/
``len``/``abs`` calls and list comprehensions — enough for expressions such as
``[int(x * 0.1 * 512) for x in range(5, 21)]``. Everything else (attributes, subscripts, imports,
lambdas, unknown names) is refused; the expression is never handed to Python's ``eval``.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Dict

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCTIONS = {"range": range, "int": int, "float": float, "round": round, "min": min, "max": max,
              "len": len, "abs": abs}
_MAX_ELEMENTS = 1_000_000
_MAX_EXPONENT = 64


class UnsafeExpressionError(ValueError):
    """The expression uses something the restricted evaluator does not allow."""


def safe_eval(expression: str) -> Any:
    """Evaluate ``expression`` with the restricted grammar described in the module docstring."""
    if not isinstance(expression, str):
        raise UnsafeExpressionError(f"Expected an expression string, got {expression!r}.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise UnsafeExpressionError(f"Cannot parse expression {expression!r}: {e.msg}") from e
    return _Evaluator(expression).visit(tree.body, {})


class _Evaluator:
    def __init__(self, expression: str):
        self.expression = expression

    def refuse(self, node: ast.AST, why: str) -> UnsafeExpressionError:
        return UnsafeExpressionError(
            f"Expression {self.expression!r} is not allowed: {why} ({type(node).__name__}). Only literals, "
            "arithmetic, range/int/float/round/min/max/len/abs and list comprehensions are accepted."
        )

    def visit(self, node: ast.AST, scope: Dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str, bool)) or node.value is None:
                return node.value
            raise self.refuse(node, f"constant {node.value!r}")
        if isinstance(node, (ast.List, ast.Tuple)):
            values = [self.visit(e, scope) for e in node.elts]
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            raise self.refuse(node, f"unknown name {node.id!r}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.visit(node.left, scope), self.visit(node.right, scope)
            if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
                raise self.refuse(node, f"exponent {right} is too large")
            if isinstance(node.op, ast.Mult) and (isinstance(left, (str, list)) or isinstance(right, (str, list))):
                raise self.refuse(node, "sequence repetition")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.visit(node.operand, scope))
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = self.visit(node.left, scope)
            for op, comparator in zip(node.ops, node.comparators):
                right = self.visit(comparator, scope)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
                raise self.refuse(node, "call of something other than an allowed builtin")
            args = [self.visit(a, scope) for a in node.args]
            result = _FUNCTIONS[node.func.id](*args)
            if isinstance(result, range) and len(result) > _MAX_ELEMENTS:
                raise self.refuse(node, f"range of {len(result)} elements")
            return result
        if isinstance(node, ast.ListComp):
            return self.list_comprehension(node, node.generators, scope)
        raise self.refuse(node, "unsupported syntax")

    def list_comprehension(self, node: ast.ListComp, generators, scope: Dict[str, Any]) -> list:
        if not generators:
            return [self.visit(node.elt, scope)]
        gen, rest = generators[0], generators[1:]
        if not isinstance(gen.target, ast.Name) or gen.is_async:
            raise self.refuse(gen.target, "comprehension target must be a plain name")
        out = []
        for value in self.visit(gen.iter, scope):
            inner = {**scope, gen.target.id: value}
            if all(self.visit(cond, inner) for cond in gen.ifs):
                out.extend(self.list_comprehension(node, rest, inner))
                if len(out) > _MAX_ELEMENTS:
                    raise self.refuse(node, "list too long")
        return out
