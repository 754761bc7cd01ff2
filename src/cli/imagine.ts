// npm run imagine -- "<prompt>" [options]   (--help lists them)
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { encodeJpeg } from '../image/jpeg.ts';
import { ANIMATION_FRAMES, encodeStepsAnimation, type StepFrame } from '../image/steps-animation.ts';
import { PipelineThread } from '../worker/pipeline-thread.ts';
import { runCli, type CommandLine } from './command-line.ts';
import { IMAGINE_SPEC, readImagineArguments } from './imagine-arguments.ts';
import { ProgressBar } from './progress-bar.ts';

async function main(commandLine: CommandLine<typeof IMAGINE_SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  const args = await readImagineArguments(commandLine);
  const { vae, previewDir, stepsVideo } = args;
  const pipeline = PipelineThread.start({ modelDir: args.modelDir, vaeDir: vae?.dir, tinyVaeDir: args.tinyVae?.dir, executionProvider: args.executionProvider });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const progress = new ProgressBar(process.stderr);
  try {
    const info = await pipeline.ready;
    process.stderr.write(`Loaded ${info.name}${vae ? ` with the VAE ${vae.name} (${vae.type})` : ''}${args.tinyVae ? `, previews with ${args.tinyVae.name}` : ''}\n`);
    const previewsWritten: Promise<void>[] = [];
    const frames: StepFrame[] = [];
    let totalSteps = args.request.steps;
    const result = await pipeline.generate(args.request, {
      signal: controller.signal,
      onStep: ({ step, totalSteps }) => progress.update(step, totalSteps),
      // Previews alone: every step's, however long they take (whoever asks for them wants to see each); an animation's
      // frames stay within the previews' budget.
      ...((previewDir !== undefined || stepsVideo !== undefined) && {
        preview: {
          ...(stepsVideo ? ANIMATION_FRAMES : { everySteps: 1, maxShare: Infinity }),
          onPreview: ({ step, totalSteps: steps, jpeg }) => {
            totalSteps = steps;
            if (stepsVideo) frames.push({ step, image: jpeg });
            if (previewDir !== undefined) previewsWritten.push(writeFile(join(previewDir, `step-${String(step).padStart(String(steps).length, '0')}.jpg`), jpeg));
          },
        },
      }),
    });
    await Promise.all(previewsWritten);
    progress.finish();
    if (stepsVideo) {
      const animation = (await encodeStepsAnimation(frames, result.png, totalSteps, { format: stepsVideo.format }))!;
      await writeFile(stepsVideo.file, animation.data);
      process.stdout.write(`Saved ${stepsVideo.file} (${animation.steps.length} frames, ${animation.width}x${animation.height})\n`);
    }
    const out = args.out ?? `imagine-${result.settings.seed}.png`;
    await writeFile(out, args.format === 'png' ? result.png : await encodeJpeg(result.png, result.parameters));
    const seconds = (result.timings.totalMs / 1000).toFixed(1);
    const { settings } = result;
    const strength = settings.strength === undefined ? '' : `, strength ${settings.strength}`;
    process.stdout.write(`Seed: ${settings.seed}\nSaved ${out} (${settings.width}x${settings.height}, ${settings.steps} steps, ${settings.scheduler}${strength}) in ${seconds} s\n`);
    return 0;
  } finally {
    progress.finish();
    await pipeline.dispose();
  }
}

runCli(IMAGINE_SPEC, main);
