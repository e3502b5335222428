"""The memory agent (rollouts, rewards, recall probes) and MemTrain's joint GRPO trainer."""
