import Testing
@testable import Reports

// Placeholder suite so the target builds; the evaluation tests replace it.
