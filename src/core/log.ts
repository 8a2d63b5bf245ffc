// Structured logging: one JSON object per line on stdout. Callers pass fields, never secrets, SQL text or row data.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
type Level = LogLevel;
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold = ORDER.info;
let baseFields: Record<string, unknown> = {};

export function configureLog(level: Level, fields: Record<string, unknown> = {}): void {
  threshold = ORDER[level];
  baseFields = fields;
}

function emit(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] < threshold) return;
  const line = JSON.stringify({ ts: new Date().toISOString(), level, msg, ...baseFields, ...fields });
  process.stdout.write(line + '\n');
}

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => emit('debug', msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => emit('info', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => emit('warn', msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => emit('error', msg, fields),
};

/** A short, secret-free description of an unexpected error for logs. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}
