mod stacks;
