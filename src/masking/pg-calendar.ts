// PostgreSQL's calendar: dates as days and timestamps as microseconds since 2000-01-01, Julian day numbers in the
// proleptic Gregorian calendar with year 0 being 1 BC (src/backend/utils/adt/datetime.c, date2j and j2date: the same
// integer arithmetic here, every operand non-negative within the supported range, so the C truncating divisions are
// Math.floor), the supported ranges, the truncations year_only and month_year make, and the ISO text of both.

/** date2j(2000, 1, 1): day 0 of dates and timestamps (src/include/datatype/timestamp.h). */
export const POSTGRES_EPOCH_JDATE = 2451545;
/** The first and the one-past-last Julian day of a date (DATETIME_MIN_JULIAN, DATE_END_JULIAN). */
const DATE_MIN_JULIAN = 0;
const DATE_END_JULIAN = 2147483494;
/** DATEVAL_NOBEGIN / DATEVAL_NOEND: -infinity and infinity (src/include/utils/date.h). */
export const DATE_NOBEGIN = -0x80000000;
export const DATE_NOEND = 0x7fffffff;
/** DT_NOBEGIN / DT_NOEND, and the range of finite timestamps: MIN_TIMESTAMP (4714-11-24 BC) to END_TIMESTAMP. */
export const TIMESTAMP_NOBEGIN = -(2n ** 63n);
export const TIMESTAMP_NOEND = 2n ** 63n - 1n;
const MIN_TIMESTAMP = -211813488000000000n;
const END_TIMESTAMP = 9223371331200000000n;
export const USECS_PER_DAY = 86_400_000_000n;

export function date2j(year: number, month: number, day: number): number {
  let y = year;
  let m = month;
  if (m > 2) {
    m += 1;
    y += 4800;
  } else {
    m += 13;
    y += 4799;
  }
  const century = Math.floor(y / 100);
  let julian = y * 365 - 32167;
  julian += Math.floor(y / 4) - century + Math.floor(century / 4);
  julian += Math.floor((7834 * m) / 256) + day;
  return julian;
}

export interface CalendarDate {
  /** Astronomical: 0 is 1 BC, -1 is 2 BC. */
  readonly year: number;
  readonly month: number;
  readonly day: number;
}

export function j2date(jd: number): CalendarDate {
  let julian = jd + 32044;
  let quad = Math.floor(julian / 146097);
  const extra = (julian - quad * 146097) * 4 + 3;
  julian += 60 + quad * 3 + Math.floor(extra / 146097);
  quad = Math.floor(julian / 1461);
  julian -= quad * 1461;
  let y = Math.floor((julian * 4) / 1461);
  julian = (y !== 0 ? (julian + 305) % 365 : (julian + 306) % 366) + 123;
  y += quad * 4;
  quad = Math.floor((julian * 2141) / 65536);
  return {
    year: y - 4800,
    month: ((quad + 10) % 12) + 1,
    day: julian - Math.floor((7834 * quad) / 256),
  };
}

/** A finite date within PostgreSQL's range (IS_VALID_DATE). */
export function isValidDate(days: number): boolean {
  const jd = days + POSTGRES_EPOCH_JDATE;
  return Number.isInteger(days) && jd >= DATE_MIN_JULIAN && jd < DATE_END_JULIAN;
}

/** A finite timestamp within PostgreSQL's range (IS_VALID_TIMESTAMP). */
export function isValidTimestamp(usecs: bigint): boolean {
  return usecs >= MIN_TIMESTAMP && usecs < END_TIMESTAMP;
}

/** Days since 2000-01-01 of a calendar date, null when there is no such day or it is out of range. */
function daysOf(year: number, month: number, day: number): number | null {
  if (month < 1 || month > 12 || day < 1 || day > 31) return null;
  const days = date2j(year, month, day) - POSTGRES_EPOCH_JDATE;
  if (!isValidDate(days)) return null;
  const back = j2date(days + POSTGRES_EPOCH_JDATE);
  return back.month === month && back.day === day ? days : null; // 02-30 is no day
}

/** Floor division of a timestamp into days and the microseconds into that day. */
function splitDay(usecs: bigint): { days: number; time: bigint } {
  let days = usecs / USECS_PER_DAY;
  let time = usecs - days * USECS_PER_DAY;
  if (time < 0n) {
    days -= 1n;
    time += USECS_PER_DAY;
  }
  return { days: Number(days), time };
}

/** The first day of the date's year (or month): the masked date of year_only (month_year); null for infinity. */
export function truncateDate(days: number, keepMonth: boolean): number | null {
  if (!isValidDate(days)) return null;
  const { year, month } = j2date(days + POSTGRES_EPOCH_JDATE);
  const first = date2j(year, keepMonth ? month : 1, 1) - POSTGRES_EPOCH_JDATE;
  // January 1st of 4714 BC comes before the first day PostgreSQL has (November 24th).
  return isValidDate(first) ? first : null;
}

/** Midnight of the first day of the timestamp's year (or month); null for infinity or before the range. */
export function truncateTimestamp(usecs: bigint, keepMonth: boolean): bigint | null {
  if (!isValidTimestamp(usecs)) return null;
  const first = truncateDate(splitDay(usecs).days, keepMonth);
  if (first === null) return null;
  const truncated = BigInt(first) * USECS_PER_DAY;
  return isValidTimestamp(truncated) ? truncated : null;
}

// ---- DateStyle ISO text -----------------------------------------------------------------------------------------

const pad = (n: number | bigint, width: number): string => String(n).padStart(width, '0');

/** 'YYYY-MM-DD' with ' BC' for years <= 0, as EncodeDateOnly writes it; the BC suffix is the caller's. */
function dateText(days: number): { text: string; bc: boolean } {
  const { year, month, day } = j2date(days + POSTGRES_EPOCH_JDATE);
  const bc = year <= 0;
  return { text: `${pad(bc ? 1 - year : year, 4)}-${pad(month, 2)}-${pad(day, 2)}`, bc };
}

/** Year, month and day of 'YYYY-MM-DD', with a ' BC' the caller found; null when it is no date. */
function readDate(y: string, m: string, d: string, bc: boolean): number | null {
  const year = Number(y);
  if (year === 0) return null; // PostgreSQL prints 1 BC, never year 0
  return daysOf(bc ? 1 - year : year, Number(m), Number(d));
}

const DATE_TEXT = /^(\d{4,7})-(\d\d)-(\d\d)( BC)?$/;

/** A date as date_out prints it in DateStyle ISO ('1984-07-02', '0044-03-15 BC', 'infinity'); null for other text. */
export function readIsoDate(text: string): number | null {
  if (text === 'infinity') return DATE_NOEND;
  if (text === '-infinity') return DATE_NOBEGIN;
  const m = DATE_TEXT.exec(text);
  return m === null ? null : readDate(m[1], m[2], m[3], m[4] !== undefined);
}

/** date_out's text in DateStyle ISO. */
export function writeIsoDate(days: number): string {
  if (days === DATE_NOEND) return 'infinity';
  if (days === DATE_NOBEGIN) return '-infinity';
  const { text, bc } = dateText(days);
  return bc ? `${text} BC` : text;
}

const TIMESTAMP_TEXT =
  /^(\d{4,7})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/;

/**
 * A timestamp as timestamp_out prints it in DateStyle ISO, or a timestamptz as timestamptz_out does (with the
 * session's offset, '+05:30', '+05:53:28'), as microseconds since 2000-01-01 (UTC for timestamptz); null for other
 * text.
 */
export function readIsoTimestamp(text: string, withZone: boolean): bigint | null {
  if (text === 'infinity') return TIMESTAMP_NOEND;
  if (text === '-infinity') return TIMESTAMP_NOBEGIN;
  const m = TIMESTAMP_TEXT.exec(text);
  if (m === null || (m[8] !== undefined) !== withZone) return null;
  const days = readDate(m[1], m[2], m[3], m[12] !== undefined);
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), Number(m[6])];
  if (days === null || hour > 23 || minute > 59 || second > 59) return null;
  const fraction = BigInt((m[7] ?? '').padEnd(6, '0'));
  let seconds = (hour * 60 + minute) * 60 + second;
  if (withZone) {
    const offset = (Number(m[9]) * 60 + Number(m[10] ?? 0)) * 60 + Number(m[11] ?? 0);
    seconds -= m[8] === '-' ? -offset : offset; // local time = UTC + offset
  }
  const usecs = BigInt(days) * USECS_PER_DAY + BigInt(seconds) * 1_000_000n + fraction;
  return isValidTimestamp(usecs) ? usecs : null;
}

/** 'YYYY-MM-DD HH:MM:SS[.ffffff]' (+00: in UTC for timestamptz) [BC], as EncodeDateTime writes ISO. */
export function writeIsoTimestamp(usecs: bigint, withZone: boolean): string {
  if (usecs === TIMESTAMP_NOEND) return 'infinity';
  if (usecs === TIMESTAMP_NOBEGIN) return '-infinity';
  const { days, time } = splitDay(usecs);
  const { text, bc } = dateText(days);
  const seconds = Number(time / 1_000_000n);
  const micros = Number(time % 1_000_000n);
  const clock = `${pad(Math.floor(seconds / 3600), 2)}:${pad(Math.floor(seconds / 60) % 60, 2)}:${pad(seconds % 60, 2)}`;
  const fraction = micros === 0 ? '' : '.' + pad(micros, 6).replace(/0+$/, '');
  return `${text} ${clock}${fraction}${withZone ? '+00' : ''}${bc ? ' BC' : ''}`;
}
