mod engine;
mod stacks;
