"""Resolution: a batch's or a person's change, as neighbourhood -> decide -> change set.

- `graph`: the decision core, pure (one rule whatever the arrival order);
- `neighbourhood`: reading what a decision must see from the master, by key;
- `changes`: applying a change set in the caller's transaction.
"""
