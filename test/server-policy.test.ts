import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { operatorLimits, operatorOffersSize, serverPolicy } from '../src/settings/server-policy.ts';

const environment = { DISCORD_TOKEN: 'x'.repeat(60), DISCORD_APPLICATION_ID: '100000000000000001', SIZES: '512x512,768x512', DEFAULT_SIZE: '512x512' };

describe('a server’s policy within the operator’s', () => {
  it('takes the server’s defaults and lower limits', () => {
    const operator = operatorLimits(loadConfig({ ...environment, MAX_STEPS: '50', MAX_QUEUE: '10', DAILY_IMAGES_PER_USER: '30' }));
    const policy = serverPolicy(operator, { maxSteps: 20, defaultSteps: 12, defaultSize: '768x512', userDailyImages: 5, serverDailyImages: 100, queueShare: 3, promptSyntax: 'plain' });
    expect(policy.generation).toMatchObject({ maxSteps: 20, defaultSteps: 12, defaultSize: { width: 768, height: 512 }, promptSyntax: 'plain' });
    expect(policy).toMatchObject({ userDailyImages: 5, serverDailyImages: 100, queueShare: 3 });
  });

  it('never goes above an operator’s limit, including one lowered after the server chose its values', () => {
    const operator = operatorLimits(loadConfig({ ...environment, MAX_STEPS: '10', MAX_QUEUE: '2', MAX_GUIDANCE: '8', DAILY_IMAGES_PER_USER: '4', DAILY_IMAGES_PER_SERVER: '50', SIZES: '512x512' }));
    const policy = serverPolicy(operator, { maxSteps: 40, defaultGuidance: 12, defaultSize: '768x512', userDailyImages: 9, serverDailyImages: 80, queueShare: 5 });
    expect(policy.generation).toMatchObject({ maxSteps: 10, maxGuidance: 8, defaultSize: { width: 512, height: 512 } });
    expect(policy.generation.defaultGuidance).toBeUndefined();
    expect(policy).toMatchObject({ userDailyImages: 4, serverDailyImages: 50, queueShare: undefined });
  });

  it('without SIZES, a server may choose a default size that suits SD or SDXL models, and no other', () => {
    const { generation } = loadConfig({ DISCORD_TOKEN: environment.DISCORD_TOKEN, DISCORD_APPLICATION_ID: environment.DISCORD_APPLICATION_ID });
    expect(generation.sizes).toBe('model');
    for (const label of ['512x768', '1024x1024', '832x1216']) expect(operatorOffersSize(generation, label)).toBe(true);
    for (const label of ['1000x1000', '64x64']) expect(operatorOffersSize(generation, label)).toBe(false);
  });
});
