// `--profile [FILE.json]`, which predict, train and bench take, and the report it prints.
import { getGpu, measureCeilings, type Profile } from '../gpu/index.ts';
import { formatProfile, summarizeProfile, writeTrace } from '../report/profile.ts';
import { str } from './options.ts';

/** v.profile: undefined without the flag, '' bare, else the trace file. */
export const PROFILE = {
  profile: {
    ...str({
      metavar: 'FILE.json',
      help: "time every GPU dispatch (timestamp queries) and print, per op kind and per layer, GPU time, share, GFLOP/s, GB/s and share of the adapter's measured peak; FILE.json (--profile=FILE.json before positionals) gets a Chrome trace for ui.perfetto.dev or chrome://tracing",
    }),
    implicit: '',
  },
};

/** Prints the profile of `steps` steps (to stderr when stdout carries JSON) and writes its trace to `trace`, if given. */
export async function reportProfile(trace: string, profile: Profile, steps: number, toStderr = false): Promise<void> {
  const ceilings = await measureCeilings(getGpu());
  const print = toStderr ? console.error : console.log;
  print(formatProfile(summarizeProfile(profile, steps, ceilings)));
  if (trace) {
    writeTrace(trace, profile);
    print(`trace: ${trace} (${profile.events.length} dispatches; open in ui.perfetto.dev or chrome://tracing)`);
  }
}
