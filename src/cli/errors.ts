/** An error the user can fix (a bad option, a missing file): printed as one line, exit code `code`. */
export class UsageError extends Error {
  constructor(message: string, readonly code = 1) {
    super(message);
    this.name = 'UsageError';
  }
}
