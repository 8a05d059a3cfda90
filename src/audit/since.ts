import { UsageError } from '../errors.js';

/** `--since` value: "90s", "30m", "1h", "7d", "2w" or plain seconds -> seconds. Throws UsageError naming the fix. */
export function parseSince(text: string, option = '--since'): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)?$/.exec(text.trim());
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 }[(m?.[2] ?? 's') as 's'];
  const sec = m ? Math.round(Number(m[1]) * unit) : NaN;
  if (!Number.isFinite(sec) || sec <= 0) throw new UsageError(`${option} ${JSON.stringify(text)}: give a duration like 30m, 1h, 24h or 7d`);
  return sec;
}
