/**
 * Midjourney-style parameters at the end of a prompt: `a castle --ar 16:9 --no text, people --seed 42`.
 * `--ar W:H` (or `--aspect`), `--no <terms>` (for the negative prompt), `--seed N`, `--steps N`, `--cfg X`.
 * A parameter starts with `--` (or the dash `—` phones make of it) after a space; the first one ends the prompt.
 */
export interface InlineParameters {
  aspectRatio?: { width: number; height: number };
  /** What `--no` asks to keep out (several `--no` are joined with commas). */
  no?: string;
  seed?: string;
  steps?: number;
  guidance?: number;
}

/** A parameter that is unknown, repeated or has no valid value; the message is for the user. */
export class InlineParameterError extends Error {
  override name = 'InlineParameterError';
}

const PARAMETER = /(?:^|\s)(?:--|—)([A-Za-z]+)(?=\s|$)/g;
const SUPPORTED = '--ar W:H, --no <text>, --seed N, --steps N, --cfg X';
const MAX_RATIO_SIDE = 100;

export function extractInlineParameters(text: string): { prompt: string; parameters: InlineParameters } {
  const matches = [...text.matchAll(PARAMETER)];
  if (matches.length === 0) return { prompt: text, parameters: {} };
  const parameters: InlineParameters = {};
  matches.forEach((match, index) => {
    const name = match[1].toLowerCase();
    const value = text.slice(match.index + match[0].length, matches[index + 1]?.index ?? text.length).trim();
    if (value === '') throw new InlineParameterError(`--${name} needs a value (supported: ${SUPPORTED}).`);
    const once = <K extends keyof InlineParameters>(key: K, parsed: InlineParameters[K]) => {
      if (parameters[key] !== undefined) throw new InlineParameterError(`--${name} is given twice.`);
      parameters[key] = parsed;
    };
    switch (name) {
      case 'ar':
      case 'aspect':
        return once('aspectRatio', parseRatio(value));
      case 'no':
        parameters.no = parameters.no === undefined ? value : `${parameters.no}, ${value}`;
        return;
      case 'seed':
        if (!/^\d{1,20}$/.test(value)) throw new InlineParameterError(`--seed must be a whole number (got "${value}").`);
        return once('seed', value);
      case 'steps':
        if (!/^\d{1,4}$/.test(value)) throw new InlineParameterError(`--steps must be a whole number (got "${value}").`);
        return once('steps', Number(value));
      case 'cfg': {
        const guidance = /^\d+(\.\d+)?$|^\.\d+$/.test(value) ? Number(value) : Number.NaN;
        if (Number.isNaN(guidance)) throw new InlineParameterError(`--cfg must be a number such as 7.5 (got "${value}").`);
        return once('guidance', guidance);
      }
      default:
        throw new InlineParameterError(`--${match[1]} is not a parameter this bot knows (supported: ${SUPPORTED}).`);
    }
  });
  return { prompt: text.slice(0, matches[0].index).trim(), parameters };
}

function parseRatio(value: string): { width: number; height: number } {
  const match = /^(\d+)\s*:\s*(\d+)$/.exec(value);
  const width = Number(match?.[1]);
  const height = Number(match?.[2]);
  if (!match || width < 1 || height < 1 || width > MAX_RATIO_SIDE || height > MAX_RATIO_SIDE) {
    throw new InlineParameterError(`--ar must look like 16:9, whole numbers from 1 to ${MAX_RATIO_SIDE} (got "${value}").`);
  }
  return { width, height };
}
