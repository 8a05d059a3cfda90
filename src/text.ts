/**
 * The one escaping of untrusted text (DNS names and answers, Docker's labels,
 * the state file, file contents) for a terminal, a log or a YAML comment. Pure.
 *
 * `printable` makes one value safe on one line: C0/C1 control characters and
 * DEL (terminal escapes, forged lines), and the invisible format characters
 * that reorder or split what is shown (bidi overrides and isolates,
 * line/paragraph separators, zero-width marks, BOM), become visible escapes.
 * Everything else, Unicode letters included, is kept.
 *
 * Commands print through these: text as lines (`printLines`: a value with a
 * newline inside stays on its line), JSON with `printJson`, and the process's
 * stdout/stderr sinks pass everything through `printText` (src/deps.ts,
 * src/cli.ts), so no escape sequence reaches a terminal even from a message
 * that forgot to escape.
 */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;
/** the same without newline: what `printText` escapes */
const UNSAFE_IN_TEXT = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;
/** what JSON.stringify leaves raw inside strings (it escapes C0 itself) */
const UNSAFE_IN_JSON = /[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

const escapeChar = (c: string): string => {
  const code = c.charCodeAt(0);
  return NAMED[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
};

/** One value on one line. */
export function printable(s: string): string {
  return s.replace(UNSAFE, escapeChar);
}

/** Lines -> text (each line escaped on its own, so nothing inside one can start another), ending in a newline. */
export function printLines(lines: readonly string[]): string {
  return `${lines.map(printable).join('\n')}\n`;
}

/** Text whose newlines are meant: everything else that a terminal would act on is escaped. */
export function printText(text: string): string {
  return text.replace(UNSAFE_IN_TEXT, escapeChar);
}

/** A JSON document (pretty, with `indent`) or line (without), with nothing raw a terminal would act on; still valid JSON. */
export function printJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
