import { describe, expect, it } from 'vitest';
import { printable } from '../../src/text.js';

describe('printable: text from DNS or the state file, safe for a terminal and one line', () => {
  it('leaves ordinary text alone, Unicode letters included', () => {
    expect(printable('api.example.com -> 203.0.113.9 (ok)')).toBe('api.example.com -> 203.0.113.9 (ok)');
    expect(printable('bücher.example ✓')).toBe('bücher.example ✓');
    expect(printable('C:\\path')).toBe('C:\\path');
  });

  it('escapes C0 and C1 controls, DEL, newlines and tabs', () => {
    expect(printable('evil\x1b[2J\x1b]0;owned\x07.example.com')).toBe('evil\\x1b[2J\\x1b]0;owned\\x07.example.com');
    expect(printable('a\nfake line\r\tb')).toBe('a\\nfake line\\r\\tb');
    expect(printable('\x00\x7f\x9b')).toBe('\\x00\\x7f\\x9b');
  });

  it('escapes bidi overrides and line separators that reorder or split what is shown', () => {
    expect(printable('moc.elpmaxe\u202egood')).toBe('moc.elpmaxe\\u202egood');
    expect(printable('a\u2028b\u2029c\u2066d\u2069\u200ee\ufeff')).toBe('a\\u2028b\\u2029c\\u2066d\\u2069\\u200ee\\ufeff');
  });
});
