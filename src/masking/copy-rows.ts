// COPY TO rows as values and back, so masking can treat them like DataRows. PostgreSQL sends one CopyData per row;
// masked sessions may only use the default options (the rules refuse others), so the codecs are fixed: text (tab
// between fields, \N for NULL, backslash escapes) and CSV (comma, double quotes doubled inside quotes, an unquoted
// empty field for NULL).

export type CopyValues = Array<Buffer | null>;

const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const COMMA = 0x2c;

/** One text-format row (its trailing newline included) as values. */
export function parseCopyText(line: Buffer): CopyValues {
  const end = line.length > 0 && line[line.length - 1] === LF ? line.length - 1 : line.length;
  const values: CopyValues = [];
  let field: number[] = [];
  let raw = 0; // bytes of the field as written, to tell \N from an escaped value
  let nullMark = false;
  const flush = () => {
    values.push(nullMark && raw === 2 ? null : Buffer.from(field));
    field = [];
    raw = 0;
    nullMark = false;
  };
  for (let i = 0; i < end; i++) {
    const c = line[i];
    if (c === TAB) {
      flush();
      continue;
    }
    if (c !== BACKSLASH || i + 1 >= end) {
      field.push(c);
      raw++;
      continue;
    }
    const e = line[++i];
    if (e === 0x4e /* N */ && raw === 0) nullMark = true;
    raw += 2;
    switch (e) {
      case 0x62:
        field.push(0x08);
        break;
      case 0x66:
        field.push(0x0c);
        break;
      case 0x6e:
        field.push(LF);
        break;
      case 0x72:
        field.push(CR);
        break;
      case 0x74:
        field.push(TAB);
        break;
      case 0x76:
        field.push(0x0b);
        break;
      case 0x78: {
        // \xH or \xHH
        let v = 0;
        let n = 0;
        while (n < 2 && i + 1 < end && isHex(line[i + 1])) {
          v = v * 16 + hexValue(line[++i]);
          n++;
          raw++;
        }
        field.push(n === 0 ? 0x78 : v);
        break;
      }
      default:
        if (e >= 0x30 && e <= 0x37) {
          // \O, \OO or \OOO
          let v = e - 0x30;
          let n = 1;
          while (n < 3 && i + 1 < end && line[i + 1] >= 0x30 && line[i + 1] <= 0x37) {
            v = v * 8 + (line[++i] - 0x30);
            n++;
            raw++;
          }
          field.push(v & 0xff);
        } else {
          field.push(e);
        }
    }
  }
  flush();
  return values;
}

/** Values as one text-format row, with its newline. */
export function formatCopyText(values: CopyValues): Buffer {
  const out: number[] = [];
  values.forEach((v, i) => {
    if (i > 0) out.push(TAB);
    if (v === null) {
      out.push(BACKSLASH, 0x4e);
      return;
    }
    for (const c of v) {
      switch (c) {
        case BACKSLASH:
          out.push(BACKSLASH, BACKSLASH);
          break;
        case TAB:
          out.push(BACKSLASH, 0x74);
          break;
        case LF:
          out.push(BACKSLASH, 0x6e);
          break;
        case CR:
          out.push(BACKSLASH, 0x72);
          break;
        case 0x08:
          out.push(BACKSLASH, 0x62);
          break;
        case 0x0c:
          out.push(BACKSLASH, 0x66);
          break;
        case 0x0b:
          out.push(BACKSLASH, 0x76);
          break;
        default:
          out.push(c);
      }
    }
  });
  out.push(LF);
  return Buffer.from(out);
}

/** One CSV row (its trailing newline included) as values; throws on a quote left open. */
export function parseCopyCsv(line: Buffer): CopyValues {
  let end = line.length;
  if (end > 0 && line[end - 1] === LF) end--;
  if (end > 0 && line[end - 1] === CR) end--;
  const values: CopyValues = [];
  let i = 0;
  while (true) {
    if (i < end && line[i] === QUOTE) {
      const field: number[] = [];
      i++;
      while (true) {
        if (i >= end) throw new Error('CSV row ends inside a quoted field');
        if (line[i] === QUOTE) {
          if (line[i + 1] === QUOTE && i + 1 < end) {
            field.push(QUOTE);
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field.push(line[i++]);
      }
      values.push(Buffer.from(field));
    } else {
      const start = i;
      while (i < end && line[i] !== COMMA) i++;
      values.push(i === start ? null : line.subarray(start, i));
    }
    if (i >= end) break;
    if (line[i] !== COMMA) throw new Error('CSV field continues after its closing quote');
    i++;
  }
  return values;
}

/** Values as one CSV row, with its newline: quoted when empty or holding a comma, quote, CR or LF. */
export function formatCopyCsv(values: CopyValues): Buffer {
  const parts: Buffer[] = [];
  values.forEach((v, i) => {
    if (i > 0) parts.push(Buffer.from(','));
    if (v === null) return;
    const needsQuotes =
      v.length === 0 ||
      v.some((c) => c === COMMA || c === QUOTE || c === CR || c === LF) ||
      (v.length === 2 && v[0] === BACKSLASH && v[1] === 0x2e);
    if (!needsQuotes) {
      parts.push(v);
      return;
    }
    const quoted: number[] = [QUOTE];
    for (const c of v) {
      if (c === QUOTE) quoted.push(QUOTE);
      quoted.push(c);
    }
    quoted.push(QUOTE);
    parts.push(Buffer.from(quoted));
  });
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexValue(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10;
}
