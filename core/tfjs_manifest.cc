// Placeholder until the tfjs manifest reader lands (being written now).
