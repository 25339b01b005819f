import Testing
import Tensors
import QuantCore
@testable import Calibration

@Suite struct MinMaxObserverTests {
    @Test func tracksTheRunningRange() throws {
        var observer = MinMaxObserver()
        try observer.observe(Tensor(shape: [3], scalars: [Float(1), -2, 5]))
        try observer.observe(Tensor(shape: [2], scalars: [Float(7), 0]))
        #expect(observer.minimum == [-2])
        #expect(observer.maximum == [7])
    }
}
