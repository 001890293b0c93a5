/**
 * Values from requests end up in messages, logs and terminals. Show them with control
 * characters escaped (JSON style) so a CR/LF or an escape sequence in a name cannot forge a
 * log line or repaint a terminal.
 */
export function printable(text: string): string {
  return JSON.stringify(text)
    .slice(1, -1)
    .replace(
      /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
}
