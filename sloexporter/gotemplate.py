"""Does Prometheus accept this alert label or annotation as a Go template?

`promtool check rules` parses every label and annotation value of an alerting rule with Go's
text/template, after Prometheus's own variable definitions and with its template
functions. This is a port of Go's text/template/parse lexer and parser (as of Go 1.19, the
Go of Debian's Prometheus 2.42), reduced to what decides "parses or not". It is stricter
than newer Go where they differ (`{{else with}}` is Go 1.23), so a value it accepts
parses on Prometheus 2 and 3 alike.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

#: Go's built-in template functions.
GO_FUNCTIONS = frozenset({
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"})
#: Prometheus's template functions that both 2.42 and 3.x define (tests check each one
#: against both promtools; toDuration, now and urlQueryEscape are 3.x only).
PROMETHEUS_FUNCTIONS = frozenset({
    "query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "safeHtml",
    "match", "title", "toUpper", "toLower", "graphLink", "tableLink", "sortByLabel",
    "stripPort", "stripDomain", "humanize", "humanize1024", "humanizeDuration",
    "humanizePercentage", "humanizeTimestamp", "toTime", "pathPrefix", "externalURL",
    "parseDuration"})
FUNCTIONS = GO_FUNCTIONS | PROMETHEUS_FUNCTIONS
#: What Prometheus defines before each alert template (rulefmt.testTemplateParsing).
PROMETHEUS_VARIABLES = ("$labels", "$externalLabels", "$externalURL", "$value")

_KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "nil",
             "template", "with"}
MAX_DEPTH = 10000


class TemplateError(Exception):
    pass


@dataclass
class _Item:
    """A lexed token: its type, text and line."""

    typ: str
    val: str
    line: int


_SPACE = " \t\r\n"
_SPACES = re.compile(r"[ \t\r\n]+")
#: Go's isAlphaNumeric: '_', unicode letters and decimal digits (Python's \w adds the
#: other numerics and connector punctuation, so it is narrowed by `_is_alnum` after)
_WORD = re.compile(r"[^\W]*")


def _word_end(text: str, pos: int) -> int:
    end = _WORD.match(text, pos).end()  # type: ignore[union-attr]
    word = text[pos:end]
    if not word.isascii():
        for i, ch in enumerate(word):
            if not _is_alnum(ch):
                return pos + i
    return end


def _is_alnum(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] == "L" or unicodedata.category(ch) == "Nd"


class _Lexer:
    """Go's text/template lexer; an error item stops it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.line = 1
        self.inside = False
        self.paren = 0
        self.items: list[_Item] = []

    def emit(self, typ: str) -> None:
        val = self.text[self.start:self.pos]
        self.items.append(_Item(typ, val, self.line))
        self.line += val.count("\n")
        self.start = self.pos

    def fail(self, message: str) -> None:
        raise TemplateError(f"{self.line}: {message}")

    def ignore(self) -> None:
        self.line += self.text[self.start:self.pos].count("\n")
        self.start = self.pos

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def lex(self) -> list[_Item]:
        while True:
            if not self.inside:
                if not self.lex_text():
                    break
            else:
                self.lex_action()
        return self.items

    def lex_text(self) -> bool:
        x = self.text.find("{{", self.pos)
        if x < 0:
            self.pos = len(self.text)
            if self.pos > self.start:
                self.emit("text")
            self.items.append(_Item("eof", "", self.line))
            return False
        self.pos = x
        after = self.text[x + 2:]
        trim = len(after) >= 2 and after[0] == "-" and after[1] in _SPACE
        end = self.pos
        if trim:
            end = len(self.text[self.start:self.pos].rstrip(_SPACE)) + self.start
        if end > self.start:
            saved = self.pos
            self.pos = end
            self.emit("text")
            self.pos = saved
        self.ignore()
        # left delimiter
        self.pos += 2
        marker = 2 if trim else 0
        if self.text.startswith("/*", self.pos + marker):
            self.pos += marker
            self.ignore()
            self.lex_comment()
            return True
        self.emit("left")
        self.inside = True
        self.pos += marker
        self.ignore()
        self.paren = 0
        return True

    def at_right(self) -> tuple[bool, bool]:
        rest = self.text[self.pos:]
        if len(rest) >= 2 and rest[0] in _SPACE and rest[1] == "-" and rest[2:].startswith("}}"):
            return True, True
        return rest.startswith("}}"), False

    def lex_comment(self) -> None:
        self.pos += 2
        x = self.text.find("*/", self.pos)
        if x < 0:
            self.fail("unclosed comment")
        self.pos = x + 2
        delim, trim = self.at_right()
        if not delim:
            self.fail("comment ends before closing delimiter")
        if trim:
            self.pos += 2
        self.pos += 2
        if trim:
            self.pos += len(self.text[self.pos:]) - len(self.text[self.pos:].lstrip(_SPACE))
        self.ignore()

    def lex_right(self) -> None:
        _, trim = self.at_right()
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += 2
        self.emit("right")
        if trim:
            self.pos += len(self.text[self.pos:]) - len(self.text[self.pos:].lstrip(_SPACE))
            self.ignore()
        self.inside = False

    def lex_action(self) -> None:
        delim, _ = self.at_right()
        if delim:
            if self.paren == 0:
                self.lex_right()
                return
            self.fail("unclosed left paren")
        ch = self.peek()
        if not ch:
            self.fail("unclosed action")
        self.pos += 1
        if ch in _SPACE:
            self.pos -= 1
            self.lex_space()
        elif ch == "=":
            self.emit("assign")
        elif ch == ":":
            if self.peek() != "=":
                self.fail("expected :=")
            self.pos += 1
            self.emit("declare")
        elif ch == "|":
            self.emit("pipe")
        elif ch == '"':
            self.lex_quote('"', "unterminated quoted string", "string")
        elif ch == "`":
            x = self.text.find("`", self.pos)
            if x < 0:
                self.fail("unterminated raw quoted string")
            self.pos = x + 1
            self.emit("rawstring")
        elif ch == "$":
            self.lex_field_or_variable("variable")
        elif ch == "'":
            self.lex_quote("'", "unterminated character constant", "char")
        elif ch == "." and not (self.pos < len(self.text) and self.text[self.pos].isdigit()
                                and self.text[self.pos].isascii()):
            self.lex_field_or_variable("field")
        elif ch in "+-." or ("0" <= ch <= "9"):
            self.pos -= 1
            self.lex_number()
        elif _is_alnum(ch):
            self.pos -= 1
            self.lex_identifier()
        elif ch == "(":
            self.paren += 1
            self.emit("lparen")
        elif ch == ")":
            self.paren -= 1
            if self.paren < 0:
                self.fail("unexpected right paren")
            self.emit("rparen")
        elif ch.isascii() and ch.isprintable():
            self.emit("char")
        else:
            self.fail(f"unrecognized character in action: U+{ord(ch):04X}")

    def lex_space(self) -> None:
        match = _SPACES.match(self.text, self.pos)
        count = match.end() - self.pos if match else 0
        self.pos += count
        rest = self.text[self.pos - 1:]
        if len(rest) >= 2 and rest[0] in _SPACE and rest[1] == "-" and \
                rest[2:].startswith("}}"):
            self.pos -= 1
            if count == 1:
                self.lex_right()
                return
        self.emit("space")

    def at_terminator(self) -> bool:
        ch = self.peek()
        if not ch or ch in _SPACE or ch in ".,|:)(":
            return True
        return self.text.startswith("}}", self.pos)

    def lex_identifier(self) -> None:
        self.pos = _word_end(self.text, self.pos)
        word = self.text[self.start:self.pos]
        if not self.at_terminator():
            self.fail(f"bad character U+{ord(self.peek()):04X}")
        if word in _KEYWORDS:
            self.emit(word)
        elif word in ("true", "false"):
            self.emit("bool")
        else:
            self.emit("identifier")

    def lex_field_or_variable(self, typ: str) -> None:
        if self.at_terminator():
            self.emit("variable" if typ == "variable" else "dot")
            return
        self.pos = _word_end(self.text, self.pos)
        if not self.at_terminator():
            self.fail(f"bad character U+{ord(self.peek()):04X}")
        self.emit(typ)

    def lex_quote(self, quote: str, message: str, typ: str) -> None:
        while True:
            ch = self.peek()
            self.pos += 1
            if ch == "\\":
                nxt = self.peek()
                self.pos += 1
                if nxt and nxt != "\n":
                    continue
                self.fail(message)
            if not ch or ch == "\n":
                self.fail(message)
            if ch == quote:
                break
        self.emit(typ)

    def lex_number(self) -> None:
        if not self.scan_number():
            self.fail(f"bad number syntax: {self.text[self.start:self.pos]!r}")
        if self.peek() in ("+", "-") and self.peek():
            if not self.scan_number() or self.text[self.pos - 1] != "i":
                self.fail(f"bad number syntax: {self.text[self.start:self.pos]!r}")
            self.emit("complex")
            return
        self.emit("number")

    def accept(self, valid: str) -> bool:
        if self.peek() and self.peek() in valid:
            self.pos += 1
            return True
        return False

    def accept_run(self, valid: str) -> None:
        while self.peek() and self.peek() in valid:
            self.pos += 1

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if self.peek() and _is_alnum(self.peek()):
            self.pos += 1
            return False
        return True


_GO_INT = re.compile(r"0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|"
                     r"0(_?[0-7])*|[1-9](_?[0-9])*")  # Go integer literals
_DEC_FLOAT = re.compile(r"(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?")
_HEX_FLOAT = re.compile(r"0[xX](_?[0-9a-fA-F])*(\.([0-9a-fA-F](_?[0-9a-fA-F])*)?)?"
                        r"[pP][+-]?\d(_?\d)*")
_ESCAPE = re.compile(r"""\\(?:[abfnrtv\\'"]|[0-7]{3}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|"""
                     r"""U[0-9a-fA-F]{8})""")


def _escape_ok(escape: str, quote: str) -> bool:
    """One escape of strconv.UnquoteChar inside `quote`-quoted text."""
    if escape in ("\\'", '\\"'):
        return escape[1] == quote
    if escape[1] in "01234567":
        return int(escape[1:], 8) <= 0o377
    if escape[1] in "uU":
        code = int(escape[2:], 16)
        return code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF
    return True


def _float_ok(core: str) -> bool:
    if _DEC_FLOAT.fullmatch(core):
        return float(core.replace("_", "")) != float("inf")
    if _HEX_FLOAT.fullmatch(core):
        try:
            return float.fromhex(core.replace("_", "")) != float("inf")
        except (ValueError, OverflowError):
            return False
    return False


def _number_ok(text: str, typ: str) -> bool:
    """Go's parse.newNumber: an integer or a float reading of the literal must succeed."""
    if typ == "char":
        body = text[1:-1]
        if len(body) == 1:
            return body not in "\\'"
        match = _ESCAPE.fullmatch(body)
        return bool(match) and _escape_ok(body, "'")
    if typ == "complex":
        return True  # `1+2i`: Go parses any lexed complex literal that does not overflow
    negative = text.startswith("-")
    core = text[1:] if text[:1] in "+-" and text[1:2] not in "+-" else text
    if core.endswith("i"):
        return _float_ok(core[:-1]) or bool(_GO_INT.fullmatch(core[:-1]))
    if _GO_INT.fullmatch(core):
        digits = core.replace("_", "")
        value = int(digits, 8) if digits[:1] == "0" and digits.isdigit() else int(digits, 0)
        if value <= (1 << 63 if negative else (1 << 64) - 1):
            return True
    # a float that looks like an integer is an overflowing integer to Go
    return any(c in core for c in ".eEpP") and _float_ok(core)


def _unquote_ok(text: str) -> bool:
    """Go's strconv.Unquote for a lexed "..." or `...` string."""
    if text.startswith("`"):
        return True
    body = text[1:-1]
    pos = 0
    while True:
        x = body.find("\\", pos)
        if x < 0:
            return True
        match = _ESCAPE.match(body, x)
        if not match or not _escape_ok(match.group(), '"'):
            return False
        pos = match.end()


class _Parser:
    def __init__(self, items: list[_Item]) -> None:
        self.items = items
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.defined: set[str] = set()

    # token access
    def next(self) -> _Item:
        item = self.items[self.i]
        self.i = min(self.i + 1, len(self.items) - 1)
        return item

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> _Item:
        return self.items[self.i]

    def next_non_space(self) -> _Item:
        item = self.next()
        while item.typ == "space":
            item = self.next()
        return item

    def peek_non_space(self) -> _Item:
        item = self.next_non_space()
        self.backup()
        return item

    def fail(self, item: _Item, message: str) -> None:
        raise TemplateError(f"{item.line}: {message}")

    def unexpected(self, item: _Item, context: str) -> None:
        shown = "EOF" if item.typ == "eof" else (
            f"<{item.val}>" if item.typ in _KEYWORDS else repr(item.val))
        self.fail(item, f"unexpected {shown} in {context}")

    def expect(self, typ: str, context: str) -> _Item:
        item = self.next_non_space()
        if item.typ != typ:
            self.unexpected(item, context)
        return item

    # grammar
    def parse(self) -> None:
        while self.peek().typ != "eof":
            if self.peek().typ == "left":
                start = self.i
                self.next()
                if self.next_non_space().typ == "define":
                    self.parse_definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if node in ("end", "else"):
                self.fail(self.items[self.i - 1], f"unexpected {{{{{node}}}}}")

    def parse_definition(self) -> None:
        name = self.next_non_space()
        if name.typ not in ("string", "rawstring"):
            self.unexpected(name, "define clause")
        if not _unquote_ok(name.val):
            self.fail(name, "invalid syntax")
        self.expect("right", "define clause")
        saved_vars, self.vars = self.vars, ["$"]
        nonempty, end = self.item_list()
        if end != "end":
            self.fail(self.peek(), f"unexpected {{{{{end}}}}} in define clause")
        self.vars = saved_vars
        key = name.val[1:-1]
        if key in self.defined and nonempty:
            self.fail(name, f"template: multiple definition of template {key!r}")
        if nonempty:
            self.defined.add(key)

    def item_list(self) -> tuple[bool, str]:
        """Parse until {{end}} or {{else}}; (whether it holds anything, which one ended)."""
        nonempty = False
        while self.peek_non_space().typ != "eof":
            node = self.text_or_action()
            if node in ("end", "else"):
                return nonempty, node
            nonempty = nonempty or node != "blank"
        self.fail(self.peek(), "unexpected EOF")
        return nonempty, ""

    def text_or_action(self) -> str:
        item = self.next_non_space()
        if item.typ == "text":
            return "text" if item.val.strip(_SPACE) else "blank"
        if item.typ == "left":
            return self.action()
        self.unexpected(item, "input")
        return ""

    def action(self) -> str:
        item = self.next_non_space()
        typ = item.typ
        if typ == "block":
            self.block_control()
            return "action"
        if typ in ("break", "continue"):
            after = self.next_non_space()
            if after.typ != "right":
                self.unexpected(after, f"{{{{{typ}}}}}")
            if self.range_depth == 0:
                self.fail(item, f"{{{{{typ}}}}} outside {{{{range}}}}")
            return "action"
        if typ == "else":
            if self.peek_non_space().typ != "if":
                self.expect("right", "else")
            return "else"
        if typ == "end":
            self.expect("right", "end")
            return "end"
        if typ in ("if", "range", "with"):
            self.parse_control(typ)
            return "action"
        if typ == "template":
            self.template_control()
            return "action"
        self.backup()
        self.pipeline("command", "right")
        return "action"

    def parse_control(self, context: str) -> None:
        saved = len(self.vars)
        self.pipeline(context, "right")
        if context == "range":
            self.range_depth += 1
        _, end = self.item_list()
        if context == "range":
            self.range_depth -= 1
        if end == "else":
            if context == "if" and self.peek().typ == "if":
                self.next()
                self.parse_control("if")
            else:
                _, end = self.item_list()
                if end != "end":
                    self.fail(self.peek(), f"expected end; found {{{{{end}}}}}")
        del self.vars[saved:]

    def block_control(self) -> None:
        name = self.next_non_space()
        self.template_name(name, "block clause")
        self.pipeline("block clause", "right")
        saved_vars, saved_range = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        _, end = self.item_list()
        if end != "end":
            self.fail(self.peek(), f"unexpected {{{{{end}}}}} in block clause")
        self.vars, self.range_depth = saved_vars, saved_range

    def template_control(self) -> None:
        name = self.next_non_space()
        self.template_name(name, "template clause")
        if self.next_non_space().typ != "right":
            self.backup()
            self.pipeline("template clause", "right")

    def template_name(self, item: _Item, context: str) -> None:
        if item.typ not in ("string", "rawstring"):
            self.unexpected(item, context)
        if not _unquote_ok(item.val):
            self.fail(item, "invalid syntax")

    def pipeline(self, context: str, end: str) -> None:
        decls = 0
        commands: list[str] = []
        while True:
            var = self.peek_non_space()
            if var.typ != "variable":
                break
            at = self.i
            self.next()
            nxt = self.peek_non_space()
            if nxt.typ in ("assign", "declare"):
                self.next_non_space()
                self.vars.append(var.val)
                break
            if nxt.typ == "char" and nxt.val == ",":
                self.next_non_space()
                self.vars.append(var.val)
                decls += 1
                if context == "range" and decls < 2:
                    if self.peek_non_space().typ in ("variable", "right", "rparen"):
                        continue
                    self.fail(nxt, "range can only initialize variables")
                self.fail(nxt, f"too many declarations in {context}")
            self.i = at  # not a declaration: the variable starts a command
            break
        while True:
            item = self.next_non_space()
            if item.typ == end:
                if not commands:
                    self.fail(item, f"missing value for {context}")
                for n, first in enumerate(commands[1:]):
                    if first in ("bool", "dot", "nil", "number", "string", "rawstring", "char",
                                 "complex"):
                        self.fail(item, f"non executable command in pipeline stage {n + 2}")
                return
            if item.typ in ("bool", "char", "complex", "dot", "field", "identifier", "number",
                            "nil", "rawstring", "string", "variable", "lparen"):
                self.backup()
                commands.append(self.command())
            else:
                self.unexpected(item, context)

    def command(self) -> str:
        first = ""
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None and not first:
                first = operand
            item = self.next()
            if item.typ == "space":
                continue
            if item.typ in ("right", "rparen"):
                self.backup()
            elif item.typ != "pipe":
                self.unexpected(item, "operand")
            break
        if not first:
            self.fail(self.peek(), "empty command")
        return first

    def operand(self) -> str | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == "field":
            while self.peek().typ == "field":
                self.next()
            if node in ("bool", "string", "rawstring", "number", "nil", "dot", "char",
                        "complex"):
                self.fail(self.peek(), f"unexpected . after term {node!r}")
            node = "chain" if node not in ("field", "variable") else node
        return node

    def term(self) -> str | None:
        item = self.next_non_space()
        typ = item.typ
        if typ == "identifier":
            if item.val not in FUNCTIONS:
                self.fail(item, f"function {item.val!r} not defined")
            return "identifier"
        if typ == "variable":
            name = item.val.split(".", 1)[0]
            if name not in self.vars:
                self.fail(item, f"undefined variable {name!r}")
            return "variable"
        if typ in ("char", "complex", "number"):
            if not _number_ok(item.val, typ):
                self.fail(item, f"illegal number syntax: {item.val!r}")
            return "number"
        if typ == "lparen":
            if self.depth >= MAX_DEPTH:
                self.fail(item, "max expression depth exceeded")
            self.depth += 1
            self.pipeline("parenthesized pipeline", "rparen")
            self.depth -= 1
            return "pipeline"
        if typ in ("string", "rawstring"):
            if not _unquote_ok(item.val):
                self.fail(item, "invalid syntax")
            return "string"
        if typ in ("dot", "nil", "field", "bool"):
            return typ
        self.backup()
        return None


@functools.lru_cache(maxsize=1 << 14)
def check(text: str, prometheus: bool = True) -> str | None:
    """None if Go's text/template (with Prometheus's functions and, by default, its
    variable definitions) parses `text`; else the problem and its line in `text`."""
    if "{{" not in text:
        return None
    try:
        parser = _Parser(_Lexer(text).lex())
        if prometheus:
            parser.vars += list(PROMETHEUS_VARIABLES)
        parser.parse()
    except TemplateError as exc:
        line, _, message = str(exc).partition(": ")
        return f"{message} (line {line} of the value)" if text.count("\n") else message
    return None
