/**
 * Text from outside (DNS names and answers, the state file) made safe to print on
 * one terminal line: C0/C1 control characters and DEL (terminal escapes, forged
 * lines), and the invisible format characters that reorder or split what is shown
 * (bidi overrides and isolates, line/paragraph separators, zero-width marks, BOM),
 * become visible escapes. Everything else, Unicode letters included, is kept. Pure.
 */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function printable(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return NAMED[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
  });
}
