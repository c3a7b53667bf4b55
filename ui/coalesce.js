// Runs an async fn at most once at a time: calls that come while it runs make it run
// once more afterwards (so the last call always sees the newest data), never piling up.
export function coalesce(fn) {
  let running = false;
  let again = false;
  return async function run() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await fn();
      } while (again);
    } finally {
      running = false;
    }
  };
}
