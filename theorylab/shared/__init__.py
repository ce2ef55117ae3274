"""Science that several studies share, between core and the studies: the ICL prompt model, CoT reasoning
prompts, the coloured-digits tasks and the task-arithmetic experiment. A study imports from here, never from
another study; this layer imports core and edit, never a study."""
