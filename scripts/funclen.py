#!/usr/bin/env python3
"""Lists C/C++ function definitions longer than a limit.

usage: scripts/funclen.py LIMIT FILE...

A function is a brace block opened at declaration scope (file, namespace,
class, extern "C") whose header ends in a parameter list, optionally followed
by qualifiers, a trailing return type or a constructor's initialiser list.
Its length runs from the line of its name to its closing brace. Lambdas and
local blocks count towards the function around them.
Prints "file:line: name: N lines" for each one over LIMIT, longest first;
exits 1 when there is one, 0 otherwise.
"""
import re
import sys

SCOPE = re.compile(r'\b(namespace|class|struct|union|enum)\b|extern\s+"C"')
CONTROL = re.compile(r'^\s*(if|for|while|switch|do|else|return|try|catch)\b')


def strip(text):
    """Blanks comments, string and character literals, and preprocessor
    lines, keeping newlines so line numbers stay right."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == '#':
            # a directive, with its continuation lines
            while i < n and not (text[i] == '\n' and text[i - 1] != '\\'):
                i += 1
            continue
        if c == '\n':
            at_line_start = True
            out.append(c)
            i += 1
            continue
        if not c.isspace():
            at_line_start = False
        if text.startswith('//', i):
            while i < n and text[i] != '\n':
                i += 1
            continue
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(''.join('\n' if ch == '\n' else ' ' for ch in text[i:j]))
            i = j
            continue
        m = re.match(r'R"([^(]*)\(', text[i:i + 20])
        if m:
            end = text.find(')' + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(''.join('\n' if ch == '\n' else ' ' for ch in text[i:j]))
            out.append('""')
            i = j
            continue
        if c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + c)
            i = j + 1
            continue
        out.append(c)
        i += 1
    return ''.join(out)


def is_function_header(header):
    h = ' '.join(header.split())
    if not h or CONTROL.match(h) or SCOPE.search(h.split('(')[0]):
        return False
    if '=' in h.split('(')[0]:  # an initialiser: int x[] = {...}
        return False
    # drop a constructor's initialiser list and trailing qualifiers
    h = re.sub(r'\)\s*:\s*[^{]*$', ')', h)
    h = re.sub(r'\)\s*(const|noexcept|override|final|mutable|&|&&|\s|->\s*[\w:<>,\s*&]+)*$', ')', h)
    return h.endswith(')')


def functions(path):
    text = strip(open(path, encoding='utf-8', errors='replace').read())
    stack = []  # (kind, start_line, name)
    header_start = 0
    for i, c in enumerate(text):
        if c in ';{}':
            if c == '{':
                in_function = any(k == 'func' for k, _, _ in stack)
                header = text[header_start:i]
                if not in_function and is_function_header(header):
                    name = re.findall(r'BPF_\w+\(\s*(\w+)', header) or re.findall(r'([~\w:]+)\s*\(', header)
                    lead = header_start + (len(header) - len(header.lstrip()))
                    line = text.count('\n', 0, lead) + 1
                    stack.append(('func', line, name[0] if name else '?'))
                elif in_function:
                    stack.append(('block', 0, ''))
                else:
                    stack.append(('scope', 0, ''))
            elif c == '}':
                if stack:
                    kind, line, name = stack.pop()
                    if kind == 'func':
                        yield name, line, text.count('\n', 0, i) + 1 - line + 1
            header_start = i + 1
        elif c == ':' and not stack_is_function(stack):
            # "public:" and friends end a header too
            prev = text[header_start:i].strip()
            if prev in ('public', 'private', 'protected'):
                header_start = i + 1


def stack_is_function(stack):
    return any(k == 'func' for k, _, _ in stack)


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    limit = int(argv[1])
    long = []
    for path in argv[2:]:
        for name, line, length in functions(path):
            if length > limit:
                long.append((length, path, line, name))
    for length, path, line, name in sorted(long, reverse=True):
        print(f'{path}:{line}: {name}: {length} lines')
    return 1 if long else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
