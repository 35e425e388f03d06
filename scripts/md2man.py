#!/usr/bin/env python3
"""Builds the man page kleak(8) from the Markdown the docs are written in.

usage: scripts/md2man.py --version V --date YYYY-MM-DD [--name TEXT] -o OUT FILE.md...

The docs/ pages are the one source: each file's "# Title" becomes a section
(.SH), its "## Heading"s subsections (.SS), deeper headings bold lines; a
"## Synopsis" moves up under NAME, where man(7) puts it.
Handles what docs/ uses: paragraphs, fenced code, "-" and "1." lists,
pipe tables, `code`, **bold**, *emphasis* and [links](target) (the text is
kept, a relative target dropped). Anything else passes through as text,
escaped, so no Markdown line can turn into a roff request.
"""
import argparse
import re
import sys


def escape(text):
    text = text.replace('\\', '\\e')
    text = text.replace('-', '\\-')
    # groff reads its input as Latin-1: anything beyond ASCII by code point
    return ''.join(c if ord(c) < 128 else '\\[u%04X]' % ord(c) for c in text)


def inline(text):
    """Markdown inline markup to roff fonts, the rest escaped."""
    out = []
    pos = 0
    pattern = re.compile(r'`([^`]+)`|\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])|\[([^\]]+)\]\(([^)\s]+)\)')
    for m in pattern.finditer(text):
        out.append(escape(text[pos:m.start()]))
        code, bold, em, link_text, target = m.groups()
        if code is not None:
            out.append('\\fB' + escape(code) + '\\fR')
        elif bold is not None:
            out.append('\\fB' + inline(bold) + '\\fR')
        elif em is not None:
            out.append('\\fI' + inline(em) + '\\fR')
        else:
            out.append(inline(link_text))
            if re.match(r'https?://', target):
                out.append(' <' + escape(target) + '>')
        pos = m.end()
    out.append(escape(text[pos:]))
    return ''.join(out)


def text_line(s):
    """A line of running text: never a request, whatever it starts with."""
    s = s.strip()
    return ('\\&' + s) if s[:1] in ('.', "'") else s


def table_cells(line):
    """A pipe table row's cells; "\\|" is a pipe inside a cell."""
    row = line.strip()
    row = row[1:] if row.startswith('|') else row
    row = row[:-1] if row.endswith('|') and not row.endswith('\\|') else row
    return [c.strip().replace('\\|', '|') for c in re.split(r'(?<!\\)\|', row)]


def convert(files, version, date, name):
    head = [f'.TH KLEAK 8 "{date}" "kleak {version}" "System Administration"',
            '.SH NAME', 'kleak \\- ' + escape(name)]
    synopsis, body = [], []
    out = body
    for path in files:
        lines = open(path, encoding='utf-8').read().split('\n')
        i = 0
        para = []

        def flush():
            if para:
                out.append('.PP')
                out.append(text_line(inline(' '.join(p.strip() for p in para))))
                para.clear()

        while i < len(lines):
            line = lines[i]
            if line.startswith('```'):
                flush()
                out.append('.PP\n.RS 4\n.nf')
                i += 1
                while i < len(lines) and not lines[i].startswith('```'):
                    out.append(text_line(escape(lines[i])) if lines[i].strip() else '')
                    i += 1
                out.append('.fi\n.RE')
                i += 1
                continue
            m = re.match(r'^(#{1,4})\s+(.*)$', line)
            if m:
                flush()
                level, title = len(m.group(1)), m.group(2).strip()
                heading = inline(title).replace('"', '')
                if title.lower() == 'synopsis':
                    out = synopsis  # hoisted under NAME, as man(7) has it
                    out.append('.SH SYNOPSIS')
                else:
                    out = body
                    if level == 1:
                        out.append('.SH "' + heading.upper() + '"')
                    elif level == 2:
                        out.append('.SS "' + heading + '"')
                    else:
                        out.append('.PP\n.B "' + heading + '"')
                i += 1
                continue
            if line.lstrip().startswith('|') and i + 1 < len(lines) and re.match(r'^\s*\|[\s:|-]+\|\s*$', lines[i + 1]):
                flush()
                header = table_cells(line)
                i += 2
                while i < len(lines) and lines[i].lstrip().startswith('|'):
                    cells = table_cells(lines[i])
                    out.append('.TP')
                    out.append(text_line(inline(cells[0])))
                    rest = [f'{inline(h)}: {inline(c)}' if len(cells) > 2 else inline(c)
                            for h, c in zip(header[1:], cells[1:]) if c]
                    out.append(text_line('; '.join(rest)) if rest else '\\&')
                    i += 1
                continue
            m = re.match(r'^(\s*)([-*]|\d+\.)\s+(.*)$', line)
            if m:
                flush()
                item = [m.group(3)]
                i += 1
                while i < len(lines) and lines[i].startswith('  ') and lines[i].strip() \
                        and not re.match(r'^\s*([-*]|\d+\.)\s+', lines[i]):
                    item.append(lines[i])
                    i += 1
                bullet = '\\(bu' if m.group(2) in '-*' else m.group(2)
                out.append(f'.IP {bullet} 4')
                out.append(text_line(inline(' '.join(x.strip() for x in item))))
                continue
            if not line.strip():
                flush()
                i += 1
                continue
            if line.startswith('>'):
                line = line.lstrip('> ')
            para.append(line)
            i += 1
        flush()
    return '\n'.join(head + synopsis + body) + '\n'


def main():
    ap = argparse.ArgumentParser(description='Markdown docs to the kleak(8) man page')
    ap.add_argument('--version', required=True)
    ap.add_argument('--date', required=True)
    ap.add_argument('--name', default='find kernel memory leaks on a running kernel with eBPF',
                    help='the NAME line: what kleak is, after "kleak -"')
    ap.add_argument('-o', '--output', required=True)
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    try:
        page = convert(a.files, a.version, a.date, a.name)
    except OSError as e:
        print(f'md2man: {e}', file=sys.stderr)
        return 1
    with open(a.output, 'w', encoding='utf-8') as f:
        f.write(page)
    return 0


if __name__ == '__main__':
    sys.exit(main())
