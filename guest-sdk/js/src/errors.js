// The error convention: a `GuestError` is a failure the tenant reports on
// purpose (bad params, unknown function, bad state bytes); the host shows
// its message. Any other exception is a bug: the component traps, like a
// Rust panic, and the host isolates the input that caused it.
//
// Why `payload`: componentize-js turns a thrown value with an own
// `payload` property into the `err` of a `result<_, guest-error>`; any
// other `Error` is rethrown, which traps.

export class GuestError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "GuestError";
    this.payload = { message };
  }

  /** The same error with `context: ` in front (where it happened). */
  context(context) {
    return new GuestError(`${context}: ${this.message}`);
  }
}

/** Runs `f`; a GuestError it throws gets `context` in front. */
export function withContext(context, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof GuestError) throw e.context(typeof context === "function" ? context() : context);
    throw e;
  }
}
