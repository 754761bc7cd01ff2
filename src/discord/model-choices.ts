import type { OfferedModels } from '../models/catalog.ts';

/** Autocomplete choices of a `model` option: the models the queue offers, the default one marked. */
export function modelChoices(offered: OfferedModels | undefined): { name: string; value: string }[] {
  return (offered?.models ?? []).map((model) => {
    const kind = model.isTiny ? ', tiny test model' : model.isTurbo ? ', SD-Turbo' : '';
    const isDefault = model.name === offered?.defaultName ? ' (default)' : '';
    return { name: `${model.name} — ${model.nativeWidth}x${model.nativeHeight}${kind}${isDefault}`, value: model.name };
  });
}
