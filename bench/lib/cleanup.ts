// A stack of things to stop, run in reverse order at the end of a scenario, on error and on SIGINT/SIGTERM.

type Step = () => unknown;

export class CleanupStack {
  private steps: Step[] = [];

  /** Adds a step; returns a function that removes it again without running it. */
  push(step: Step): () => void {
    this.steps.push(step);
    return () => {
      const i = this.steps.lastIndexOf(step);
      if (i >= 0) this.steps.splice(i, 1);
    };
  }

  private running: Promise<void> | null = null;

  /**
   * Runs every step once, newest first; a failing step is reported and the rest still run. A call while a run is
   * in progress (SIGINT during the normal teardown) joins that run instead of racing it.
   */
  run(): Promise<void> {
    this.running ??= (async () => {
      for (let step = this.steps.pop(); step; step = this.steps.pop()) {
        try {
          await step();
        } catch (err) {
          console.error(`cleanup step failed: ${(err as Error).message}`);
        }
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }
}
