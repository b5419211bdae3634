"""The task board: every task's view, the queue of those waiting, their deadlines, and
who submitted the unfinished ones."""
