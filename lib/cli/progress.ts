/**
 * Progress of long work (list, gc, purge), always on stderr so stdout stays
 * the command's output: on a terminal a one-line bar redrawn in place, else
 * a plain line every N items (logs and CI keep them readable).
 */

/** The part of a stream progress needs: `process.stderr`, or a fake in tests. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Plain mode: one line every this many items. */
  every: number;
  /** Off: nothing is written. */
  enabled: boolean;
  /** Terminal mode: milliseconds between redraws. @default 100 */
  redrawMs?: number;
  /** @default Date.now */
  clock?: () => number;
}

const BAR_WIDTH = 24;

export class Progress {
  readonly #stream: ProgressStream;
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #every: number;
  readonly #enabled: boolean;
  readonly #tty: boolean;
  readonly #redrawMs: number;
  readonly #clock: () => number;
  #done = 0;
  #lastDraw = -Infinity;
  #drawn = false;
  #lines = 0;

  /** `total` undefined: the amount of work is not known in advance (a count is shown, no bar). */
  constructor(stream: ProgressStream, label: string, total: number | undefined, options: ProgressOptions) {
    this.#stream = stream;
    this.#label = label;
    this.#total = total;
    this.#every = options.every;
    this.#enabled = options.enabled;
    this.#tty = stream.isTTY === true;
    this.#redrawMs = options.redrawMs ?? 100;
    this.#clock = options.clock ?? Date.now;
  }

  /** Items done so far. */
  get done(): number {
    return this.#done;
  }

  /** Records `n` more items done. */
  tick(n = 1): void {
    const before = this.#done;
    this.#done += n;
    if (!this.#enabled) return;
    if (this.#tty) {
      const now = this.#clock();
      if (now - this.#lastDraw >= this.#redrawMs) {
        this.#lastDraw = now;
        this.#draw();
      }
    } else if (Math.floor(this.#done / this.#every) > Math.floor(before / this.#every)) {
      this.#line();
    }
  }

  /** The work is over: the bar is cleared; in plain mode a last line closes the ones written. */
  finish(): void {
    if (!this.#enabled) return;
    if (this.#tty) {
      if (this.#drawn) this.#stream.write('\r\x1b[K');
      this.#drawn = false;
    } else if (this.#lines > 0 && this.#done % this.#every !== 0) {
      this.#line();
    }
  }

  #line(): void {
    this.#lines += 1;
    this.#stream.write(`${this.#label}: ${this.#amount()}\n`);
  }

  #draw(): void {
    let text = `${this.#label} `;
    if (this.#total !== undefined && this.#total > 0) {
      const ratio = Math.min(1, this.#done / this.#total);
      const filled = Math.round(ratio * BAR_WIDTH);
      text += `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] `;
    }
    text += this.#amount();
    const columns = this.#stream.columns;
    if (columns !== undefined && columns > 1 && text.length >= columns) text = text.slice(0, columns - 1);
    this.#stream.write(`\r${text}\x1b[K`);
    this.#drawn = true;
  }

  #amount(): string {
    if (this.#total === undefined) return `${this.#done}`;
    const percent = this.#total === 0 ? 100 : Math.min(100, Math.floor((this.#done / this.#total) * 100));
    return `${this.#done}/${this.#total} (${percent}%)`;
  }
}
