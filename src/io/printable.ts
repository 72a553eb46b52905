// File and class names come from users' folders and may hold any character but '/' and NUL: a
// newline in a name would split a table row or forge a log line, an escape sequence would drive the
// terminal, a bidi override would reorder what is shown. Every name gpunet prints goes through
// printable(), which writes such characters as escapes (\n, \t, \x1b, \u{202e}).

// C0 controls, DEL, C1 controls; Unicode line and paragraph separators; bidi marks, embeddings,
// overrides and isolates; zero-width and byte-order marks
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/gu;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `s` with its control and direction characters escaped: always one line, shown as stored. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => {
    const code = c.codePointAt(0)!;
    return NAMED[c] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`);
  });
}
