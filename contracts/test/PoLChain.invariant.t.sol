// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../src/PoLChain.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @dev Drives a chain-bound chain with valid blocks, regressing blocks, early and timely redraws, stale and
/// duplicate blocks, strangers, new prevrandao values and time warps, and keeps ghost state of what should
/// have happened.
contract PoLChainHandler is TestBase {
    PoLChain public immutable chain;
    address public immutable attester;

    uint64 public ghostHeight;
    bytes32 public ghostModel;
    bytes32 public ghostLink;
    uint256 public strangerSuccesses;
    uint256 public regressionSuccesses;
    uint256 public earlyRedrawSuccesses;
    uint256 public validRefusals;
    uint256 public hashMismatches;
    uint256 public redraws;
    mapping(bytes32 => uint256) public timesRecorded;
    bytes32[] public recorded;
    uint32[] public correctHistory;
    uint64 internal _lastHeight;
    bytes32 internal _lastModel;

    constructor(PoLChain c, address a) {
        chain = c;
        attester = a;
        ghostModel = c.latestModelHash();
        ghostLink = c.tipLink();
        correctHistory.push(c.tipCorrect());
    }

    function _args(bytes32 w, uint32 before, uint32 gain, uint32 j)
        internal
        view
        returns (PoLChain.Header memory h)
    {
        uint32[] memory p = new uint32[](4);
        for (uint32 i; i < 4; ++i) p[i] = 2 * i + 1;
        h = PoLChain.Header({
            parent: chain.tipLink(),
            taskSpecHash: chain.TASK_SPEC_HASH(),
            difficulty: chain.difficulty(),
            height: chain.tipHeight() + 1,
            weightsHash: keccak256(abi.encode(w)),
            newWeightsHash: w,
            segmentRoot: keccak256(abi.encode("segment", w)),
            indices: p,
            correctBefore: before,
            correctAfter: before + gain,
            redraw: j,
            miner: msg.sender
        });
    }

    function _send(PoLChain.Header memory h) internal returns (bytes32) {
        return chain.submitBlock(
            h.height, h.weightsHash, h.newWeightsHash, h.segmentRoot, h.indices, h.correctBefore, h.correctAfter,
            h.redraw, h.miner
        );
    }

    function _recordSuccess(PoLChain.Header memory h, bytes32 hash, bytes32 randao) internal {
        ++ghostHeight;
        ghostModel = h.newWeightsHash;
        ghostLink = keccak256(abi.encode(hash, randao));
        ++timesRecorded[hash];
        recorded.push(hash);
        correctHistory.push(h.correctAfter);
        _lastHeight = h.height;
        _lastModel = h.newWeightsHash;
    }

    function submitValid(bytes32 w, uint8 gain, uint8 dip, bytes32 randao) external {
        uint32 tipCount = chain.tipCorrect();
        if (tipCount > type(uint24).max - 512) return;
        // W may be below the tip (the segment can cost accuracy) as long as W' is not.
        uint32 before = tipCount - uint32(bound(dip, 0, tipCount < 50 ? tipCount : 50));
        uint32 g = uint32(bound(gain, tipCount - before + (tipCount == before ? 1 : 0), tipCount - before + 200));
        PoLChain.Header memory h = _args(w, before, g, 0);
        vm.prevrandao(randao);
        // A revert here must count (the invariant run ignores reverting handler calls).
        try this.sendExternal(h) returns (bytes32 hash) {
            if (hash != keccak256(abi.encode(h))) ++hashMismatches;
            _recordSuccess(h, hash, randao);
        } catch {
            ++validRefusals;
        }
    }

    function submitRegressing(bytes32 w, uint8 loss) external {
        uint32 tipCount = chain.tipCorrect();
        if (tipCount < 2) return;
        uint32 after_ = tipCount - uint32(bound(loss, 1, tipCount - 1));
        PoLChain.Header memory h = _args(w, after_ - 1, 1, 0);
        try this.sendExternal(h) {
            ++regressionSuccesses;
        } catch {}
    }

    function submitRedraw(bytes32 w, uint32 j, bytes32 randao) external {
        j = uint32(bound(j, 1, 5));
        uint256 opensAt = uint256(chain.tipTime()) + uint256(j) * chain.REDRAW_AFTER();
        uint32 tipCount = chain.tipCorrect();
        if (tipCount > type(uint24).max - 2) return;
        PoLChain.Header memory h = _args(w, tipCount, 1, j);
        vm.prevrandao(randao);
        try this.sendExternal(h) returns (bytes32 hash) {
            if (block.timestamp < opensAt) ++earlyRedrawSuccesses;
            if (hash != keccak256(abi.encode(h))) ++hashMismatches;
            ++redraws;
            _recordSuccess(h, hash, randao);
        } catch {
            if (block.timestamp >= opensAt) ++validRefusals;
        }
    }

    /// @dev Lets try/catch observe a revert while keeping the prank on the chain call.
    function sendExternal(PoLChain.Header memory h) external returns (bytes32) {
        vm.prank(attester);
        return _send(h);
    }

    function resubmitLast() external {
        if (ghostHeight == 0) return;
        PoLChain.Header memory h = _args(_lastModel, chain.tipCorrect(), 1, 0);
        h.height = _lastHeight;
        try this.sendExternal(h) returns (bytes32 hash) {
            ++timesRecorded[hash];
        } catch {}
    }

    function submitAsStranger(address who, bytes32 w) external {
        if (who == attester) return;
        PoLChain.Header memory h = _args(w, chain.tipCorrect(), 1, 0);
        vm.prank(who);
        try chain.submitBlock(
            h.height, h.weightsHash, h.newWeightsHash, h.segmentRoot, h.indices, h.correctBefore, h.correctAfter,
            h.redraw, h.miner
        ) {
            ++strangerSuccesses;
        } catch {}
    }

    function submitWithBadHeight(bytes32 w, uint64 height) external {
        PoLChain.Header memory h = _args(w, chain.tipCorrect(), 1, 0);
        if (height == h.height) return;
        h.height = height;
        try this.sendExternal(h) returns (bytes32 hash) {
            ++timesRecorded[hash];
        } catch {}
    }

    function warp(uint32 dt) external {
        vm.warp(block.timestamp + bound(dt, 0, 600));
    }

    function recordedCount() external view returns (uint256) {
        return recorded.length;
    }

    function historyLength() external view returns (uint256) {
        return correctHistory.length;
    }
}

contract PoLChainInvariantTest is TestBase {
    PoLChain internal chain;
    PoLChainHandler internal handler;

    function setUp() public {
        vm.warp(1_000_000);
        chain = new PoLChain(
            PoLChain.Genesis({
                taskSpecHash: keccak256("task"),
                weightsHash: keccak256("w0"),
                numParams: 3842,
                batchSize: 4,
                correct: 100,
                rules: PoLChain.Rules.ChainBound,
                sabotageTolerance: 5,
                difficulty: 4,
                minDifficulty: 1,
                maxDifficulty: 32,
                targetBlockTime: 10,
                halfLife: 40,
                redrawAfter: 60,
                attester: address(0xA77E),
                owner: address(0x0B0B)
            })
        );
        handler = new PoLChainHandler(chain, address(0xA77E));
    }

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    /// @dev forge fuzzes only the handler's actions (not its `sendExternal` trampoline).
    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        bytes4[] memory s = new bytes4[](7);
        s[0] = PoLChainHandler.submitValid.selector;
        s[1] = PoLChainHandler.submitRegressing.selector;
        s[2] = PoLChainHandler.submitRedraw.selector;
        s[3] = PoLChainHandler.resubmitLast.selector;
        s[4] = PoLChainHandler.submitAsStranger.selector;
        s[5] = PoLChainHandler.submitWithBadHeight.selector;
        s[6] = PoLChainHandler.warp.selector;
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector(address(handler), s);
    }

    function invariant_ValidBlocksAcceptedAndHashedAsHeaders() public view {
        assertEq(handler.validRefusals(), 0, "every valid block (and every open redraw) is accepted");
        assertEq(handler.hashMismatches(), 0, "block hash = keccak256(abi.encode(full header))");
    }

    function invariant_HeightGrowsByOneBlockAtATime() public view {
        assertEq(chain.tipHeight(), handler.ghostHeight(), "height equals accepted valid blocks");
        assertEq(handler.recordedCount(), handler.ghostHeight(), "one record per height");
    }

    function invariant_NoBlockRecordedTwice() public view {
        uint256 n = handler.recordedCount();
        for (uint256 i; i < n; ++i) assertEq(handler.timesRecorded(handler.recorded(i)), 1, "recorded once");
    }

    function invariant_OnlyAttestersExtend() public view {
        assertEq(handler.strangerSuccesses(), 0, "no stranger extended the chain");
    }

    function invariant_LatestModelIsTipWPrime() public view {
        assertEq(chain.latestModelHash(), handler.ghostModel(), "latestModelHash is the tip's W'");
    }

    function invariant_OnlyValidLinks() public view {
        // The tip link is keccak256(tip hash || prevrandao at its inclusion), or the genesis link.
        assertEq(chain.tipLink(), handler.ghostLink(), "link = keccak256(blockHash, prevrandao)");
    }

    function invariant_TipCorrectNeverDecreases() public view {
        assertEq(handler.regressionSuccesses(), 0, "no regressing block accepted");
        uint256 n = handler.historyLength();
        for (uint256 i = 1; i < n; ++i) {
            assertTrue(handler.correctHistory(i) >= handler.correctHistory(i - 1), "monotone tip");
        }
        assertEq(chain.tipCorrect(), handler.correctHistory(n - 1), "tip count is the last block's");
    }

    function invariant_RedrawsNeverEarly() public view {
        assertEq(handler.earlyRedrawSuccesses(), 0, "no redraw before its timeout");
    }

    function invariant_DifficultyWithinBoundsAndRule() public view {
        uint256 k = chain.difficulty();
        assertTrue(k >= chain.MIN_DIFFICULTY() && k <= chain.MAX_DIFFICULTY(), "k within bounds");
        assertEq(k, chain.difficultyAt(chain.tipHeight(), chain.tipTime()), "k from (tip height, tip time)");
    }
}
