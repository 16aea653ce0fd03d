// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../src/PoLChain.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @dev Drives the chain with valid blocks, stale and duplicate blocks, strangers and time warps,
/// and keeps ghost state of what should have happened.
contract PoLChainHandler is TestBase {
    PoLChain public immutable chain;
    address public immutable attester;

    uint64 public ghostHeight;
    bytes32 public ghostModel;
    uint256 public strangerSuccesses;
    mapping(bytes32 => uint256) public timesRecorded;
    bytes32[] public recorded;
    PoLChain.Header internal _last;

    constructor(PoLChain c, address a) {
        chain = c;
        attester = a;
        ghostModel = c.latestModelHash();
    }

    function _header(bytes32 w, uint32 gain) internal view returns (PoLChain.Header memory h) {
        uint32[] memory p = new uint32[](4);
        for (uint32 i; i < 4; ++i) p[i] = i;
        uint32 before = chain.tipCorrect();
        h = PoLChain.Header({
            parent: chain.tipHash(),
            height: chain.tipHeight() + 1,
            taskSpecHash: chain.TASK_SPEC_HASH(),
            weightsHash: chain.latestModelHash(),
            newWeightsHash: w,
            indices: p,
            correctBefore: before,
            correctAfter: before + gain,
            difficulty: chain.difficulty(),
            miner: msg.sender
        });
    }

    function submitValid(bytes32 w, uint8 gain) external {
        if (chain.tipCorrect() > type(uint32).max - 256) return;
        PoLChain.Header memory h = _header(w, uint32(bound(gain, 1, 255)));
        vm.prank(attester);
        bytes32 hash = chain.submitBlock(h);
        ++ghostHeight;
        ghostModel = w;
        ++timesRecorded[hash];
        recorded.push(hash);
        _last = h;
    }

    function resubmitLast() external {
        if (ghostHeight == 0) return;
        vm.prank(attester);
        try chain.submitBlock(_last) {
            ++timesRecorded[keccak256(abi.encode(_last))];
        } catch {}
    }

    function submitAsStranger(address who, bytes32 w) external {
        if (who == attester) return;
        PoLChain.Header memory h = _header(w, 1);
        vm.prank(who);
        try chain.submitBlock(h) {
            ++strangerSuccesses;
        } catch {}
    }

    function submitWithBadHeight(bytes32 w, uint64 height) external {
        PoLChain.Header memory h = _header(w, 1);
        if (height == h.height) return;
        h.height = height;
        vm.prank(attester);
        try chain.submitBlock(h) {
            ++timesRecorded[keccak256(abi.encode(h))];
        } catch {}
    }

    function warp(uint32 dt) external {
        vm.warp(block.timestamp + bound(dt, 0, 3600));
    }

    function recordedCount() external view returns (uint256) {
        return recorded.length;
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
                numParams: 3866,
                batchSize: 4,
                correct: 100,
                sabotageTolerance: 5,
                difficulty: 4,
                minDifficulty: 1,
                maxDifficulty: 32,
                maxRetargetStep: 4,
                retargetInterval: 5,
                targetBlockTime: 10,
                attester: address(0xA77E),
                owner: address(0x0B0B)
            })
        );
        handler = new PoLChainHandler(chain, address(0xA77E));
    }

    /// @dev forge fuzzes only the handler's functions.
    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
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
        if (handler.ghostHeight() > 0) {
            assertEq(chain.tipHash(), handler.recorded(handler.recordedCount() - 1), "tip is the last recorded");
        }
    }

    function invariant_DifficultyWithinBounds() public view {
        uint256 k = chain.difficulty();
        assertTrue(k >= chain.MIN_DIFFICULTY() && k <= chain.MAX_DIFFICULTY(), "k within bounds");
    }
}
