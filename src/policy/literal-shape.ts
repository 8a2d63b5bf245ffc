// The shape of a statement with its plain numeric literals taken out: `... WHERE aid = 48213` and
// `... WHERE aid = 9` share the shape `... WHERE aid = ?`. Simple-protocol clients (pgbench -S, ORMs that inline
// values) send a new text for every statement; the parse cache also keys on the shape, so judging them costs a
// lookup instead of a parse.
//
// Soundness rests on one property: two texts with the same shape differ only in digit runs that are numeric
// literal tokens to PostgreSQL, or that lie inside strings or comments — never inside an identifier, where a digit
// changes a name. The scanner below follows PostgreSQL's lexer (scan.l, standard_conforming_strings on, which
// pgwarden enforces) for everything that can hide or reveal an identifier: comments (nested), standard, E'',
// B'', X'', N'', U&'' strings, quoted identifiers (also U&""), dollar quoting, parameters and identifiers.
// Whatever it cannot place with certainty (unterminated quotes or comments, digits touching letters, exponents,
// other radixes) is left as it is, which only costs a parse. Property tests compare the parser's facts of texts
// that share a shape.

const CH_QUOTE = 0x27; // '
const CH_DQUOTE = 0x22; // "
const CH_DOLLAR = 0x24; // $
const CH_BACKSLASH = 0x5c;
const CH_DOT = 0x2e;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** PostgreSQL's ident_start: letters, underscore, and any non-ASCII (high bytes of multibyte characters). */
function isIdentStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c >= 0x80;
}

/** ident_cont: ident_start, digits and $. */
function isIdentCont(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === CH_DOLLAR;
}

/** Index just past a quoted run closed by `quote` (doubled quotes stay inside); -1 when unterminated. */
function skipQuoted(text: string, from: number, quote: number, backslashEscapes: boolean): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (backslashEscapes && c === CH_BACKSLASH) {
      i++;
      continue;
    }
    if (c === quote) {
      if (text.charCodeAt(i + 1) === quote) {
        i++;
        continue;
      }
      return i + 1;
    }
  }
  return -1;
}

/** Index just past a (nested) comment that starts at `from` with slash-star; -1 when unterminated. */
function skipBlockComment(text: string, from: number): number {
  let depth = 0;
  for (let i = from; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    const next = text.charCodeAt(i + 1);
    if (c === 0x2f && next === 0x2a) {
      depth++;
      i++;
    } else if (c === 0x2a && next === 0x2f) {
      depth--;
      i++;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z_0-9\u0080-\uffff]*)?\$/y;

/**
 * The text with every plain numeric literal (digits, optionally with one decimal point) replaced by `?`, or null
 * when there is none or the text cannot be placed with certainty. The result is a cache key, never parsed.
 */
export function literalShape(text: string): string | null {
  let out = '';
  let copiedTo = 0;
  let changed = false;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    const next = i + 1 < n ? text.charCodeAt(i + 1) : -1;
    if (c === 0x2d && next === 0x2d) {
      // -- comment to the end of the line
      let j = i + 2;
      while (j < n && text.charCodeAt(j) !== 0x0a && text.charCodeAt(j) !== 0x0d) j++;
      i = j;
      continue;
    }
    if (c === 0x2f && next === 0x2a) {
      const end = skipBlockComment(text, i);
      if (end < 0) return null;
      i = end;
      continue;
    }
    if (c === CH_QUOTE || c === CH_DQUOTE) {
      const end = skipQuoted(text, i + 1, c, false);
      if (end < 0) return null;
      i = end;
      continue;
    }
    if (c === CH_DOLLAR) {
      if (isDigit(next)) {
        // $1: a parameter, kept as written
        let j = i + 1;
        while (j < n && isDigit(text.charCodeAt(j))) j++;
        i = j;
        continue;
      }
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(text);
      if (tag === null) {
        i++;
        continue;
      }
      const close = text.indexOf(tag[0], i + tag[0].length);
      if (close < 0) return null;
      i = close + tag[0].length;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentCont(text.charCodeAt(j))) j++;
      const word = j - i;
      const after = j < n ? text.charCodeAt(j) : -1;
      const first = c | 0x20; // lower case for letters
      if (
        word === 1 &&
        after === CH_QUOTE &&
        (first === 0x65 /* e */ || first === 0x62 || first === 0x78 || first === 0x6e)
      ) {
        // E'...' takes backslash escapes; B'', X'', N'' are quoted like standard strings
        const end = skipQuoted(text, j + 1, CH_QUOTE, first === 0x65);
        if (end < 0) return null;
        i = end;
        continue;
      }
      if (word === 1 && first === 0x75 /* u */ && after === 0x26 /* & */) {
        const q = j + 1 < n ? text.charCodeAt(j + 1) : -1;
        if (q === CH_QUOTE || q === CH_DQUOTE) {
          const end = skipQuoted(text, j + 2, q, false);
          if (end < 0) return null;
          i = end;
          continue;
        }
      }
      i = j;
      continue;
    }
    if (isDigit(c) || (c === CH_DOT && isDigit(next))) {
      // A number-like run: only plain digits with at most one point, not touching letters, $ or another point,
      // are taken out; anything else (1e5, 0x1F, 1_000, 1.2.3, 123abc) stays.
      let j = i;
      while (j < n && (isIdentCont(text.charCodeAt(j)) || text.charCodeAt(j) === CH_DOT)) j++;
      const run = text.slice(i, j);
      const before = i > 0 ? text.charCodeAt(i - 1) : -1;
      if (/^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/.test(run) && !isIdentCont(before) && before !== CH_DOT) {
        out += text.slice(copiedTo, i) + '?';
        copiedTo = j;
        changed = true;
      }
      i = j;
      continue;
    }
    i++;
  }
  if (!changed) return null;
  return out + text.slice(copiedTo);
}
