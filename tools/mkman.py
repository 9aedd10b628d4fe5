#!/usr/bin/env python3
"""Man pages from weft's public headers.

    mkman.py --out DIR include/weft.h [include/weft_tls.h ...]
    mkman.py --list include/weft.h ...   (the pages it would write, one a line)

Every WEFT_API declaration belongs to the comment above it: a comment that
starts a line outside any braces opens a group, and the declarations up to
the next such comment are its functions. Each group becomes one section-3
page named after its first function (the others get .so links), with
SYNOPSIS = the group's code (declarations, typedefs, #defines), DESCRIPTION =
the comment, CONVENTIONS = the comment that opens the header's section (the
"/* ---- name" comments) and a pointer to weft(7). A group without
functions whose code defines a macro (WEFT_WITH_DEADLINE) is added to the
page before it. weft(7) is docs/weft.7.in with the header's opening comment
(the conventions) and the list of pages filled in. Nothing is written by
hand per function, so the pages cannot drift from the header.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def version(paths):
    v = {}
    for p in paths:
        for m in re.finditer(r'^#define WEFT_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)', open(p).read(), re.M):
            v[m.group(1)] = m.group(2)
    return '%s.%s.%s' % (v.get('MAJOR', '0'), v.get('MINOR', '0'), v.get('PATCH', '0'))


def comment_text(lines):
    """Text of a /* ... */ comment given as source lines."""
    out = []
    for i, l in enumerate(lines):
        l = l.rstrip()
        if i == 0:
            l = re.sub(r'^\s*/\*+', '', l)
        if l.endswith('*/'):
            l = l[:-2].rstrip()
        l = re.sub(r'^\s*\* ?', '', l) if i > 0 else l.lstrip(' ')
        out.append(l)
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def parse(path):
    """Returns (intro lines, groups); a group is a dict with keys comment,
    code (lines), funcs (names), section (the section comment's text)."""
    src = open(path).read().split('\n')
    groups = []
    intro = None
    section = []
    cur = None
    depth = 0
    i = 0
    while i < len(src):
        line = src[i]
        s = line.strip()
        if depth == 0 and s.startswith('/*'):
            j = i
            while '*/' not in src[j]:
                j += 1
            block = src[i:j + 1]
            after = src[j].split('*/', 1)[1].strip()
            i = j + 1
            text = comment_text(block)
            if intro is None:
                intro = text
                continue
            if text and re.match(r'^-{4,}', text[0]):
                head = re.sub(r'^-+\s*', '', text[0]).strip()
                section = [head] + text[1:]
                # Its text also describes declarations right below it.
                cur = {'comment': text[1:], 'code': [], 'funcs': [], 'section': section}
                groups.append(cur)
                continue
            cur = {'comment': text, 'code': [], 'funcs': [], 'section': section}
            groups.append(cur)
            if after:
                cur['code'].append(after)
            continue
        if cur is not None and s and not s.startswith('#ifndef WEFT') and s not in ('#endif', '}', 'extern "C" {'):
            cur['code'].append(line)
        if s.startswith('WEFT_API'):
            decl = s
            k = i
            while ';' not in decl and '{' not in decl:
                k += 1
                decl += ' ' + src[k].strip()
                if cur is not None:
                    cur['code'].append(src[k])
            m = re.search(r'([A-Za-z_][A-Za-z0-9_]*)\s*\(', decl)
            if m and cur is not None:
                cur['funcs'].append(m.group(1))
            i = k + 1
            continue
        # extern "C" { ... } (under #ifdef __cplusplus) is not a scope.
        if s != 'extern "C" {' and not (s == '}' and i > 0 and src[i - 1].strip() == '#ifdef __cplusplus'):
            depth += line.count('{') - line.count('}')
        i += 1
    # Merge function-less groups that define a macro into the page before.
    merged = []
    for g in groups:
        if g['funcs']:
            merged.append(g)
        elif merged and any(re.match(r'\s*#define\s+WEFT_\w+\(', c) for c in g['code']):
            merged[-1]['comment'] += [''] + g['comment']
            merged[-1]['code'] += g['code']
    return intro or [], merged


def esc(t):
    t = t.replace('\\', '\\e').replace('-', '\\-')
    if t.startswith('.') or t.startswith("'"):
        t = '\\&' + t
    return t


def synopsis(code, header):
    out = ['.nf', '.B #include <%s>' % header, '']
    skip_body = 0
    cont = False
    for l in code:
        s = l.strip()
        if cont:
            cont = l.rstrip().endswith('\\')
            continue
        if skip_body:
            skip_body += l.count('{') - l.count('}')
            if skip_body <= 0:
                skip_body = 0
            continue
        if s.startswith('static inline'):
            d = l.count('{') - l.count('}')
            if d > 0:
                skip_body = d
            continue
        if s.startswith('#if') or s.startswith('#endif') or s.startswith('#else'):
            continue
        if s.startswith('#define') and l.rstrip().endswith('\\'):
            cont = True
            l = l.rstrip()[:-1].rstrip()
        l = l.replace('WEFT_API ', '')
        out.append(esc(l.rstrip()) if l.strip() else '')
    out.append('.fi')
    return out


def prose(lines):
    """Comment lines to roff: paragraphs filled, list items and aligned
    tables kept on their own lines."""
    out = []
    bullet = False
    for l in lines:
        s = l.strip()
        if not s:
            out.append('.PP')
            bullet = False
            continue
        if s.startswith('- '):
            bullet = True
            out.append('.IP \\(bu 2')
            out.append(esc(s[2:]))
            continue
        if re.match(r'^(-E[A-Z0-9]+|-errno|n > 0|0|-?[A-Za-z0-9_]+)\s{2,}\S', s) \
                or re.match(r'^(new|send|recv|try_send|close|len|wait|watch|unwatch|push|pop|next|cancel|free|spawn|join_timeout|join_all|join_any|lock|trylock|unlock|acquire|try_acquire|release)(\(\w*\))?:', s):
            out.append('.PP' if bullet and not s.startswith('-') else '.br')
            if not s.startswith('-'):
                bullet = False
        out.append(esc(s))
    return out


def page(g, header, ver, others):
    name = g['funcs'][0]
    lines = ['.\\" Generated by tools/mkman.py from include/%s; do not edit.' % header,
             '.TH %s 3 "" "weft %s" "weft manual"' % (name.upper(), ver),
             '.SH NAME',
             esc(', '.join(dict.fromkeys(g['funcs']))) + ' \\- ' + esc(summary(g)),
             '.SH SYNOPSIS']
    lines += synopsis(g['code'], header)
    lines += ['.PP', 'Link with', '.BR "pkg\\-config \\-\\-libs %s" .' % ('weft_tls' if 'tls' in header else 'weft'),
              '.SH DESCRIPTION']
    lines += prose(g['comment'])
    if g['section'] and g['section'][1:] != g['comment']:
        lines += ['.SH CONVENTIONS', 'The rules of this part of', '.I %s' % header,
                  '(%s):' % esc(g['section'][0] or 'section'), '.PP']
        lines += prose(g['section'][1:]) if len(g['section']) > 1 else []
        lines += ['.PP']
    else:
        lines += ['.SH CONVENTIONS']
    lines += ['Return values, timeouts, cancellation and deadline scopes follow the rules in',
              '.BR weft (7).']
    see = ['.BR weft (7)'] + ['.BR %s (3)' % o for o in others if o != name][:12]
    lines += ['.SH SEE ALSO', ',\n'.join(see)]
    return name, '\n'.join(lines) + '\n'


def summary(g):
    first = re.sub(r'^\w+: ', '', ' '.join(g['comment']).strip())
    m = re.match(r'(.+?[.:])(\s|$)', first)
    s = m.group(1) if m else first
    s = s.rstrip('.:')
    return s[:140]


def main(argv):
    out = None
    listing = False
    args = []
    it = iter(argv)
    for a in it:
        if a == '--out':
            out = next(it)
        elif a == '--list':
            listing = True
        else:
            args.append(a)
    if not args or (out is None and not listing):
        sys.stderr.write(__doc__)
        return 2
    ver = version(args)
    pages = []  # (file, text)
    index = []  # (header, name, funcs, summary)
    intro_main = []
    for path in args:
        header = os.path.basename(path)
        intro, groups = parse(path)
        if header == 'weft.h':
            k = next((n for n, l in enumerate(intro) if l.startswith('Conventions')), 0)
            intro_main = intro[k + 1:] if k else intro
        for g in groups:
            names = [h['funcs'][0] for h in groups if h['section'] is g['section']]
            name, text = page(g, header, ver, names)
            pages.append(('man3/%s.3' % name, text))
            for f in dict.fromkeys(g['funcs'][1:]):
                if f != name:
                    pages.append(('man3/%s.3' % f, '.so man3/%s.3\n' % name))
            index.append((header, name, list(dict.fromkeys(g['funcs'])), summary(g)))
    tmpl = open(os.path.join(ROOT, 'docs', 'weft.7.in')).read()
    conv = '\n'.join(prose(intro_main))
    idx = []
    last = None
    for header, name, funcs, summ in index:
        if header != last:
            idx += ['.SS %s' % header]
            last = header
        idx += ['.TP', '.BR %s (3)' % name, esc(', '.join(funcs)) + ': ' + esc(summ) + '.']
    seven = tmpl.replace('@VERSION@', ver).replace('@CONVENTIONS@', conv).replace('@PAGES@', '\n'.join(idx))
    pages.append(('man7/weft.7', seven))
    if listing:
        for f, _ in pages:
            print(f)
        return 0
    for f, text in pages:
        p = os.path.join(out, f)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'w') as fh:
            fh.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
